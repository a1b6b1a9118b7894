package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// groupsElector is the optional capability of a backend that several
// servers share (pgstore.Store): it elects the one server that runs the
// store's consumer groups. A backend without it (the embedded store,
// which one process holds) has its groups run by its only server.
type groupsElector interface {
	// CampaignGroups blocks until this server owns the groups or ctx
	// ends; lost is closed if the ownership is lost, release gives it up
	// once the engine has stopped.
	CampaignGroups(ctx context.Context, url string) (lost <-chan struct{}, release func(), err error)
	// GroupsOwner is the URL the owner advertised, "" when none owns them.
	GroupsOwner(ctx context.Context) (string, error)
}

// forwardedHeader marks a group RPC a server forwarded to the owner: the
// receiver answers it itself, never forwards it again (the owner may have
// changed in between).
const forwardedHeader = "Rewind-Groups-Forwarded-By"

// lostStopTimeout bounds the last commit of an engine whose ownership was
// lost: the next owner starts after pgstore.GroupsGrace, which is longer.
const lostStopTimeout = time.Second

// election runs the campaign of a server whose backend elects the groups'
// owner.
type election struct {
	el     groupsElector
	stop   context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	target string
	proxy  *httputil.ReverseProxy
}

// engine returns the consumer engine, or an unavailable error when this
// server does not run the groups (another server of the same database
// does, or one is taking over): the client retries, through any server.
func (s *Server) engine(ctx context.Context) (*consumer.Engine, error) {
	if e := s.groups.Load(); e != nil {
		return e, nil
	}
	if s.election == nil {
		return nil, rewind.ErrClosed
	}
	owner, _ := ctx.Value(ownerKey{}).(string)
	if owner == "" {
		return nil, apiconv.Errorf(rewind.CodeClosed, "rewind: no server runs the consumer groups of this store "+
			"right now (none took them over within %s of the last owner's end: check that a server of this "+
			"database runs, and its log): retry", ownerWait)
	}
	return nil, apiconv.Errorf(rewind.CodeClosed, "rewind: the consumer groups of this store are run by the server "+
		"at %s, not by this one (they moved while the request was forwarded, or the owner is starting): retry, "+
		"or send group requests to it", owner)
}

type ownerKey struct{}

// startElection campaigns, in the background, for the groups of a shared
// backend; the server runs the engine while it owns them.
func (s *Server) startElection(el groupsElector) {
	ctx, stop := context.WithCancel(context.Background())
	s.election = &election{el: el, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(s.election.done)
		s.campaign(ctx, el)
	}()
}

func (s *Server) campaign(ctx context.Context, el groupsElector) {
	for {
		lost, release, err := el.CampaignGroups(ctx, s.advertiseURL())
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, rewind.ErrClosed) {
				return
			}
			s.log.Warn("could not campaign for the consumer groups; trying again", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		e, err := consumer.Open(ctx, s.store, consumer.Config{Logger: s.log})
		if err != nil {
			release()
			if ctx.Err() != nil {
				return
			}
			s.log.Error("won the consumer groups but could not open them; giving them up and trying again", "err", err)
			time.Sleep(time.Second)
			continue
		}
		s.log.Info("running the consumer groups of the store", "url", s.advertiseURL())
		s.groups.Store(e)
		timeout := s.cfg.ShutdownTimeout
		select {
		case <-ctx.Done():
		case <-lost:
			s.log.Warn("lost the consumer groups (the connection holding their lock failed); stopping them")
			timeout = lostStopTimeout
		}
		s.groups.Store(nil)
		cctx, cancel := context.WithTimeout(context.Background(), timeout)
		if err := e.Close(cctx); err != nil {
			s.log.Warn("the consumer groups' last commit failed; acks since the one before come again", "err", err)
		}
		cancel()
		release()
		if ctx.Err() != nil {
			return
		}
	}
}

// stopElection stops the engine (its last commit written) and gives the
// groups up, so that another server takes them over without waiting.
func (s *Server) stopElection() {
	s.election.stop()
	<-s.election.done
}

// advertiseURL is where the other servers send this one group requests.
func (s *Server) advertiseURL() string {
	if s.cfg.AdvertiseURL != "" {
		return s.cfg.AdvertiseURL
	}
	return s.URL()
}

// ownerWait bounds how long a group request waits for an owner while none
// runs the groups (one is taking over): longer than a takeover takes
// (pgstore.GroupsGrace and the campaign's polling), so that a client sees
// a takeover as a slower answer rather than an error.
const ownerWait = 10 * time.Second

// groupsRoute serves the group RPCs here when this server runs the groups
// (or has no election), and otherwise forwards them to the owner, so that
// any server answers for every group and no two deliver. While no server
// runs them (a takeover), a request waits for one, up to ownerWait. A
// request forwarded to this server is never forwarded again.
func (s *Server) groupsRoute(local http.Handler, errw *connect.ErrorWriter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.election == nil {
			local.ServeHTTP(w, r)
			return
		}
		self := s.advertiseURL()
		forwarded := r.Header.Get(forwardedHeader) != ""
		deadline := time.Now().Add(ownerWait)
		for {
			if s.groups.Load() != nil {
				local.ServeHTTP(w, r)
				return
			}
			owner, err := s.election.el.GroupsOwner(r.Context())
			if err != nil {
				errw.Write(w, r, apiconv.ToConnect(err))
				return
			}
			if owner != "" && owner != self && !forwarded {
				p, err := s.election.proxyTo(owner, self, errw)
				if err != nil {
					errw.Write(w, r, apiconv.Errorf(rewind.CodeClosed, "rewind: the consumer groups of this store are "+
						"run by %q, which is not a URL this server can forward to (%v): send group requests there",
						owner, err))
					return
				}
				p.ServeHTTP(w, r)
				return
			}
			// None runs them, or this server is about to (it won them and
			// waits for the last owner to have stopped), or a forwarded
			// request found that the owner changed: the local handler
			// answers unavailable, naming the owner.
			if (owner != "" && owner != self) || time.Now().After(deadline) {
				local.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ownerKey{}, owner)))
				return
			}
			select {
			case <-r.Context().Done():
				errw.Write(w, r, apiconv.ToConnect(r.Context().Err()))
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

// forwardedBody is the body of a forwarded request. Closing it closes the
// incoming request's body too: when the owner dies, the transport closes
// the body it sends to end the stream, and a read of the incoming body
// that waits for a member that has nothing to send (no deliveries, no
// acks) must end, or the member's stream would hang instead of failing
// (net/http's proxy only marks its copy closed).
type forwardedBody struct {
	io.ReadCloser
	in io.ReadCloser
}

func (b *forwardedBody) Close() error {
	b.ReadCloser.Close()
	return b.in.Close()
}

func (e *election) proxyTo(owner, self string, errw *connect.ErrorWriter) (*httputil.ReverseProxy, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.target == owner {
		return e.proxy, nil
	}
	u, err := url.Parse(owner)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("want http://HOST:PORT or https://HOST:PORT")
	}
	t := &http.Transport{Proxy: nil, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}
	t.Protocols = new(http.Protocols)
	if u.Scheme == "https" {
		t.Protocols.SetHTTP1(true)
		t.Protocols.SetHTTP2(true)
	} else {
		t.Protocols.SetUnencryptedHTTP2(true) // h2c: gRPC streams need HTTP/2
	}
	if e.proxy != nil {
		e.proxy.Transport.(*http.Transport).CloseIdleConnections()
	}
	e.target = owner
	e.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Header.Set(forwardedHeader, self)
			if pr.Out.Body != nil {
				pr.Out.Body = &forwardedBody{ReadCloser: pr.Out.Body, in: pr.In.Body}
			}
		},
		Transport:     t,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			errw.Write(w, r, apiconv.Errorf(rewind.CodeClosed, "rewind: the consumer groups of this store are run "+
				"by the server at %s, which could not be reached (%v): retry (another server takes over within "+
				"seconds when it is gone)", owner, err))
		},
	}
	return e.proxy, nil
}
