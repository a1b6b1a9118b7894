package server

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/auth"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// groupService implements the ConsumerGroupService on the server's
// consumer engine (package consumer), which keeps every group's state in
// the served store.
//
// Scopes name a group by its state stream, "_rewind.group.NAME" (see
// consumer.StateStream), so that the token model stays one of stream
// patterns: read on it to describe the group (ListGroups, GroupInfo,
// ListParked, a ResetGroup plan); write on it to consume (and read on
// every stream the group's filter selects); admin on it to manage the
// group (CreateGroup, which also needs read on the filter's streams,
// DeleteGroup, an executed ResetGroup, ReplayParked, PurgeParked).
type groupService struct{ s *Server }

// authorizeGroup fails with PermissionDenied unless the request's token
// allows action on group. The message names the scope that would.
func authorizeGroup(ctx context.Context, action auth.Action, group string) error {
	tok := tokenFrom(ctx)
	res := consumer.StateStream(group)
	if tok != nil && tok.Allows(action, res) {
		return nil
	}
	name := "(none)"
	if tok != nil {
		name = tok.Name
	}
	return apiconv.Errorf(rewind.CodePermissionDenied,
		"rewind: permission denied: token %q may not %s group %q; it needs a scope such as %s:%s (or %s:%s*)",
		name, groupVerb(action), group, action, res, action, consumer.StateStream(""))
}

func groupVerb(a auth.Action) string {
	switch a {
	case auth.Read:
		return "describe"
	case auth.Write:
		return "consume from"
	}
	return "manage"
}

// authorizeFilter fails with PermissionDenied unless the token may read
// every stream the filter selects: a group must not hand a member events
// it could not read itself.
func authorizeFilter(ctx context.Context, group string, f rewind.Filter) error {
	tok := tokenFrom(ctx)
	if tok != nil && tok.AllowsPrefix(auth.Read, f.StreamPrefix) {
		return nil
	}
	name := "(none)"
	if tok != nil {
		name = tok.Name
	}
	return apiconv.Errorf(rewind.CodePermissionDenied, "rewind: permission denied: group %q delivers the events of "+
		"streams starting with %q, and token %q may not read all of them; it needs a scope such as read:%s*",
		group, f.StreamPrefix, name, f.StreamPrefix)
}

// checkGroup validates a group name and authorizes action on it.
func checkGroup(ctx context.Context, action auth.Action, group string) error {
	if err := consumer.ValidateGroupName(group); err != nil {
		return err
	}
	return authorizeGroup(ctx, action, group)
}

func (g *groupService) CreateGroup(ctx context.Context, req *connect.Request[rewindv1.CreateGroupRequest]) (*connect.Response[rewindv1.CreateGroupResponse], error) {
	cfg, err := apiconv.GroupConfigFromProto(req.Msg.GetConfig())
	if err != nil {
		return nil, err
	}
	if err := checkGroup(ctx, auth.Admin, cfg.Name); err != nil {
		return nil, err
	}
	if err := authorizeFilter(ctx, cfg.Name, cfg.Filter); err != nil {
		return nil, err
	}
	e, err := g.s.engine(ctx)
	if err != nil {
		return nil, err
	}
	info, err := e.CreateGroup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&rewindv1.CreateGroupResponse{Group: apiconv.GroupToProto(info)}), nil
}

func (g *groupService) ListGroups(ctx context.Context, _ *connect.Request[rewindv1.ListGroupsRequest]) (*connect.Response[rewindv1.ListGroupsResponse], error) {
	tok := tokenFrom(ctx)
	res := &rewindv1.ListGroupsResponse{}
	e, err := g.s.engine(ctx)
	if err != nil {
		return nil, err
	}
	for _, in := range e.Groups() {
		if tok.Allows(auth.Read, consumer.StateStream(in.Config.Name)) {
			res.Groups = append(res.Groups, apiconv.GroupToProto(in))
		}
	}
	return connect.NewResponse(res), nil
}

func (g *groupService) GroupInfo(ctx context.Context, req *connect.Request[rewindv1.GroupInfoRequest]) (*connect.Response[rewindv1.GroupInfoResponse], error) {
	name := req.Msg.GetGroup()
	if err := checkGroup(ctx, auth.Read, name); err != nil {
		return nil, err
	}
	e, err := g.s.engine(ctx)
	if err != nil {
		return nil, err
	}
	info, err := e.Info(name)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&rewindv1.GroupInfoResponse{Group: apiconv.GroupToProto(info)}), nil
}

func (g *groupService) DeleteGroup(ctx context.Context, req *connect.Request[rewindv1.DeleteGroupRequest]) (*connect.Response[rewindv1.DeleteGroupResponse], error) {
	name := req.Msg.GetGroup()
	if err := checkGroup(ctx, auth.Admin, name); err != nil {
		return nil, err
	}
	e, err := g.s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.DeleteGroup(ctx, name); err != nil {
		return nil, err
	}
	return connect.NewResponse(&rewindv1.DeleteGroupResponse{}), nil
}

func (g *groupService) ResetGroup(ctx context.Context, req *connect.Request[rewindv1.ResetGroupRequest]) (*connect.Response[rewindv1.ResetGroupResponse], error) {
	name := req.Msg.GetGroup()
	action := auth.Read // a plan changes nothing
	if req.Msg.GetExecute() {
		action = auth.Admin
	}
	if err := checkGroup(ctx, action, name); err != nil {
		return nil, err
	}
	opts, err := apiconv.ResetFromProto(req.Msg)
	if err != nil {
		return nil, err
	}
	e, err := g.s.engine(ctx)
	if err != nil {
		return nil, err
	}
	plan, err := e.Reset(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	res := connect.NewResponse(&rewindv1.ResetGroupResponse{Plan: apiconv.PlanToProto(plan)})
	if plan.Clamped {
		res.Header().Set(apiconv.HeaderResetClamped, "true")
		res.Header().Set(apiconv.HeaderResetNote, plan.Note)
	}
	return res, nil
}

func (g *groupService) ListParked(ctx context.Context, req *connect.Request[rewindv1.ListParkedRequest]) (*connect.Response[rewindv1.ListParkedResponse], error) {
	m := req.Msg
	if err := checkGroup(ctx, auth.Read, m.GetGroup()); err != nil {
		return nil, err
	}
	if m.GetLimit() > 10_000 {
		return nil, &rewind.LimitError{Limit: "parked events per page (limit)", Max: 10_000, Got: int64(m.GetLimit()),
			Hint: "list in pages: continue with after set to the last position you got"}
	}
	e, err := g.s.engine(ctx)
	if err != nil {
		return nil, err
	}
	list, err := e.Parked(ctx, m.GetGroup(), consumer.ParkedOptions{After: rewind.Position(m.GetAfter()),
		Limit: int(m.GetLimit())})
	if err != nil {
		return nil, err
	}
	res := &rewindv1.ListParkedResponse{}
	for _, p := range list {
		res.Parked = append(res.Parked, apiconv.ParkedToProto(p))
	}
	return connect.NewResponse(res), nil
}

func (g *groupService) ReplayParked(ctx context.Context, req *connect.Request[rewindv1.ReplayParkedRequest]) (*connect.Response[rewindv1.ReplayParkedResponse], error) {
	m := req.Msg
	if err := checkGroup(ctx, auth.Admin, m.GetGroup()); err != nil {
		return nil, err
	}
	e, err := g.s.engine(ctx)
	if err != nil {
		return nil, err
	}
	n, err := e.ReplayParked(ctx, m.GetGroup(), consumer.ReplayOptions{Through: rewind.Position(m.GetThrough())})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&rewindv1.ReplayParkedResponse{Count: uint64(n)}), nil
}

func (g *groupService) PurgeParked(ctx context.Context, req *connect.Request[rewindv1.PurgeParkedRequest]) (*connect.Response[rewindv1.PurgeParkedResponse], error) {
	m := req.Msg
	if err := checkGroup(ctx, auth.Admin, m.GetGroup()); err != nil {
		return nil, err
	}
	e, err := g.s.engine(ctx)
	if err != nil {
		return nil, err
	}
	n, err := e.PurgeParked(ctx, m.GetGroup(), consumer.PurgeOptions{Through: rewind.Position(m.GetThrough())})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&rewindv1.PurgeParkedResponse{Purged: uint64(n)}), nil
}

// refuseSystemStream refuses a user's append or delete of a stream the
// server keeps for itself (prefix "_rewind."): the consumer groups' state
// lives there, and a forged record would change what a group delivers.
func refuseSystemStream(stream string) error {
	if len(stream) < len(consumer.SystemStreamPrefix) || stream[:len(consumer.SystemStreamPrefix)] != consumer.SystemStreamPrefix {
		return nil
	}
	return &rewind.ValidationError{Field: "stream", Value: stream, Reason: fmt.Sprintf("names a stream of "+
		"rewind's own (prefix %q), where the server keeps its consumer groups' state; only the server writes "+
		"it: use the ConsumerGroupService RPCs (rewind groups …) to change a group", consumer.SystemStreamPrefix)}
}

// settleError is the in-band answer of a settlement that failed.
func (s *Server) settleError(ctx context.Context, op string, id uint64, err error) *rewindv1.ConsumeError {
	ae := s.appendError(ctx, err)
	out := &rewindv1.ConsumeError{DeliveryId: id, Op: op, Kind: "invalid", Code: ae.GetCode(),
		Message: ae.GetMessage(), Detail: ae.GetDetail()}
	switch {
	case errors.Is(err, consumer.ErrStaleDelivery):
		out.Kind = "stale"
	case errors.Is(err, consumer.ErrForeignDelivery):
		out.Kind = "foreign"
	case errors.Is(err, consumer.ErrUnknownDelivery):
		out.Kind = "unknown"
	}
	return out
}
