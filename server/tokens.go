package server

import (
	"context"
	"errors"

	"connectrpc.com/connect"
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

func (t *tokenService) CreateToken(ctx context.Context, req *connect.Request[rewindv1.CreateTokenRequest]) (*connect.Response[rewindv1.CreateTokenResponse], error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	scopes, err := auth.ParseScopes(req.Msg.GetScopes())
	if err != nil {
		return nil, err
	}
	tok, secret, err := t.s.tokens.Create(req.Msg.GetName(), scopes)
	if err != nil {
		return nil, tokenError(err)
	}
	t.s.log.Info("token created", "request_id", infoFrom(ctx).id, "by", tokenFrom(ctx).Name, "token", tok.Name,
		"id", tok.ID, "scopes", tok.ScopeStrings())
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
