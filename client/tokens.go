package client

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// Token describes an access token (never its secret).
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// ExpiresAt is set for a token created with a TTL.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func tokenFromProto(p *rewindv1.Token) Token {
	t := Token{ID: p.GetId(), Name: p.GetName(), Scopes: p.GetScopes(), CreatedAt: p.GetCreatedAt().AsTime()}
	if p.GetRevokedAt() != nil {
		t.RevokedAt = p.GetRevokedAt().AsTime()
	}
	if p.GetExpiresAt() != nil {
		t.ExpiresAt = p.GetExpiresAt().AsTime()
	}
	return t
}

// CreateToken creates a token with scopes such as "write:orders-*" and
// returns it with its secret, which the server shows only this once. It
// needs an admin:* token.
func (c *Client) CreateToken(ctx context.Context, name string, scopes ...string) (Token, string, error) {
	return c.CreateExpiringToken(ctx, name, 0, scopes...)
}

// CreateExpiringToken is CreateToken for a token that expires ttl after
// its creation (at least 1s; 0 means never): from then on the server
// refuses it as a revoked one, and ends the streams it opened.
func (c *Client) CreateExpiringToken(ctx context.Context, name string, ttl time.Duration, scopes ...string) (Token, string, error) {
	req := &rewindv1.CreateTokenRequest{Name: name, Scopes: scopes}
	if ttl != 0 {
		req.Ttl = durationpb.New(ttl)
	}
	res, err := c.tokens.CreateToken(ctx, connect.NewRequest(req))
	if err != nil {
		return Token{}, "", apiconv.FromConnect(err)
	}
	return tokenFromProto(res.Msg.GetToken()), res.Msg.GetSecret(), nil
}

// ListTokens lists tokens, revoked ones too when asked.
func (c *Client) ListTokens(ctx context.Context, includeRevoked bool) ([]Token, error) {
	res, err := retry(ctx, c, func() (*connect.Response[rewindv1.ListTokensResponse], error) {
		return c.tokens.ListTokens(ctx, connect.NewRequest(&rewindv1.ListTokensRequest{IncludeRevoked: includeRevoked}))
	})
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(res.Msg.GetTokens()))
	for _, p := range res.Msg.GetTokens() {
		out = append(out, tokenFromProto(p))
	}
	return out, nil
}

// RevokeToken revokes the token with this id or name.
func (c *Client) RevokeToken(ctx context.Context, idOrName string) (Token, error) {
	res, err := retry(ctx, c, func() (*connect.Response[rewindv1.RevokeTokenResponse], error) {
		return c.tokens.RevokeToken(ctx, connect.NewRequest(&rewindv1.RevokeTokenRequest{IdOrName: idOrName}))
	})
	if err != nil {
		return Token{}, err
	}
	return tokenFromProto(res.Msg.GetToken()), nil
}
