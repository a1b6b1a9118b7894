package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// tokenService implements the TokenService. Every call needs admin:*.
type tokenService struct{ s *Server }

func requireAdmin(ctx context.Context) error {
	tok := tokenFrom(ctx)
	if tok != nil && tok.IsAdmin() {
		return nil
	}
	name := "(none)"
	if tok != nil {
		name = tok.Name
	}
	return apiconv.Errorf(rewind.CodePermissionDenied,
		"rewind: permission denied: token %q may not manage tokens; that needs the scope admin:*", name)
}

// TokenToProto converts a token's description (never its secret).
func tokenToProto(t auth.Token) *rewindv1.Token {
	p := &rewindv1.Token{Id: t.ID, Name: t.Name, Scopes: t.ScopeStrings(), CreatedAt: timestamppb.New(t.CreatedAt)}
	if t.Revoked() {
		p.RevokedAt = timestamppb.New(t.RevokedAt)
	}
	if !t.ExpiresAt.IsZero() {
		p.ExpiresAt = timestamppb.New(t.ExpiresAt)
	}
	return p
}

func tokenError(err error) error {
	switch {
	case errors.Is(err, auth.ErrTokenNotFound):
		return apiconv.Errorf(rewind.CodeNotFound, "%s", err.Error())
	case errors.Is(err, auth.ErrNameTaken):
		return apiconv.Errorf(rewind.CodeAlreadyExists, "%s", err.Error())
	}
	return err
}

// durationJSON writes d as the API's JSON does ("-5s", "1.5s"), not in
// protobuf's text form ("seconds:-5").
func durationJSON(d *durationpb.Duration) string {
	return strconv.FormatFloat(float64(d.GetSeconds())+float64(d.GetNanos())/1e9, 'f', -1, 64) + "s"
}

func (t *tokenService) CreateToken(ctx context.Context, req *connect.Request[rewindv1.CreateTokenRequest]) (*connect.Response[rewindv1.CreateTokenResponse], error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if n := len(req.Msg.GetScopes()); n > auth.MaxScopes {
		return nil, &rewind.ValidationError{Field: "scopes",
			Reason: fmt.Sprintf("a token has at most %d scopes, got %d; use patterns such as orders-*", auth.MaxScopes, n)}
	}
	scopes, err := auth.ParseScopes(req.Msg.GetScopes())
	if err != nil {
		return nil, err
	}
	var ttl time.Duration
	if d := req.Msg.GetTtl(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			return nil, &rewind.ValidationError{Field: "ttl", Value: durationJSON(d),
				Reason: "must be a positive duration, such as \"86400s\"; leave it out for a token that lasts until it is revoked"}
		}
		ttl = d.AsDuration()
	}
	tok, secret, err := t.s.tokens.Create(req.Msg.GetName(), scopes, ttl)
	if err != nil {
		return nil, tokenError(err)
	}
	t.s.log.Info("token created", "request_id", infoFrom(ctx).id, "by", tokenFrom(ctx).Name, "token", tok.Name,
		"id", tok.ID, "scopes", tok.ScopeStrings(), "expires_at", tok.ExpiresAt)
	return connect.NewResponse(&rewindv1.CreateTokenResponse{Token: tokenToProto(tok), Secret: secret}), nil
}

func (t *tokenService) ListTokens(ctx context.Context, req *connect.Request[rewindv1.ListTokensRequest]) (*connect.Response[rewindv1.ListTokensResponse], error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	res := &rewindv1.ListTokensResponse{}
	for _, tok := range t.s.tokens.List(req.Msg.GetIncludeRevoked()) {
		res.Tokens = append(res.Tokens, tokenToProto(tok))
	}
	return connect.NewResponse(res), nil
}

func (t *tokenService) RevokeToken(ctx context.Context, req *connect.Request[rewindv1.RevokeTokenRequest]) (*connect.Response[rewindv1.RevokeTokenResponse], error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	tok, err := t.s.tokens.Revoke(req.Msg.GetIdOrName())
	if err != nil {
		return nil, tokenError(err)
	}
	t.s.log.Info("token revoked", "request_id", infoFrom(ctx).id, "by", tokenFrom(ctx).Name, "token", tok.Name, "id", tok.ID)
	return connect.NewResponse(&rewindv1.RevokeTokenResponse{Token: tokenToProto(tok)}), nil
}
