package throttle

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// HTTP is a signal served by an endpoint. The contract, for a GET of URL:
//
//   - 200 with a body that is one number (such as "0.42\n"): the number is
//     compared with Max and Critical; with neither set, 200 is "go on"
//     whatever the body.
//   - 429 or 503: at the max (wait); the body's first line is the reason.
//   - 423 (Locked): critical (pause); the body's first line is the reason.
//   - anything else (500, a redirect, no answer within Timeout, a refused
//     connection), or a 200 whose body is not a number when a threshold
//     is set: the signal cannot be read, and the run pauses (fail closed).
type HTTP struct {
	// Label names the signal "http:Label".
	Label string
	URL   string
	// Threshold applies to a 200's number; zero ignores the number.
	Threshold
	// Timeout bounds each request. Defaults to 2s.
	Timeout time.Duration
	// Client defaults to http.DefaultClient (without redirects).
	Client *http.Client
}

// Name is "http:Label".
func (h *HTTP) Name() string { return "http:" + h.Label }

// Read asks the endpoint.
func (h *HTTP) Read(ctx context.Context) (Reading, error) {
	timeout := h.readTimeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return Reading{}, err
	}
	c := h.Client
	if c == nil {
		c = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, err := c.Do(req)
	if err != nil {
		return Reading{}, fmt.Errorf("GET %s: %w", h.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return Reading{}, fmt.Errorf("GET %s: read the body: %w", h.URL, err)
	}
	text := strings.TrimSpace(string(body))
	first, _, _ := strings.Cut(text, "\n")
	say := func(what string) string {
		if first == "" {
			return fmt.Sprintf("%s answered %d (%s)", h.Name(), resp.StatusCode, what)
		}
		return fmt.Sprintf("%s answered %d: %s", h.Name(), resp.StatusCode, first)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return Reading{Util: 1, Reason: say("at its max")}, nil
	case http.StatusLocked:
		return Reading{Util: 1, Critical: true, Reason: say("critical")}, nil
	default:
		return Reading{}, fmt.Errorf("GET %s answered %d, which the contract does not know (200, 429, 503 or 423): %q",
			h.URL, resp.StatusCode, first)
	}
	if h.Max == 0 && h.Critical == 0 {
		return Reading{}, nil
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return Reading{}, fmt.Errorf("GET %s answered 200 with %q, not one number", h.URL, truncate(text, 100))
	}
	return h.Threshold.level(h.Name(), v, number), nil
}

// readTimeout is the request's timeout: Timeout, or 2s.
func (h *HTTP) readTimeout() time.Duration {
	if h.Timeout == 0 {
		return 2 * time.Second
	}
	return h.Timeout
}

// truncate cuts s to n bytes at most (on a rune boundary), marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
