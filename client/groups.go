package client

import (
	"context"

	"fmt"

	"connectrpc.com/connect"

	"github.com/rewindhq/rewind"
	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/consumer"
	"github.com/rewindhq/rewind/internal/apiconv"
)

// The consumer group management calls of a server, with the consumer
// package's types, so that code written against a consumer.Engine reads
// the same against a server. Calls that change nothing are retried like
// reads; the others are not (a retried create could find its own group).

// CreateGroup creates a durable group on the server (see
// consumer.Engine.CreateGroup).
func (c *Client) CreateGroup(ctx context.Context, cfg consumer.GroupConfig) (consumer.GroupInfo, error) {
	if err := c.checkOpen(); err != nil {
		return consumer.GroupInfo{}, err
	}
	// The wire carries caps unsigned: refuse a negative one here rather
	// than let it arrive as 0, the default.
	for _, l := range []struct {
		name string
		v    int
	}{
		{"max ack pending", cfg.MaxAckPending}, {"max pending", cfg.MaxPending},
		{"member max ack pending", cfg.MemberMaxAckPending}, {"max parked", cfg.MaxParked},
		{"replay chunk", cfg.ReplayChunk},
	} {
		if l.v < 0 {
			return consumer.GroupInfo{}, &rewind.ValidationError{Field: l.name, Value: fmt.Sprint(l.v),
				Reason: "must not be negative (0 takes the default)"}
		}
	}
	res, err := c.groups.CreateGroup(ctx, connect.NewRequest(&rewindv1.CreateGroupRequest{
		Config: apiconv.GroupConfigToProto(cfg)}))
	if err != nil {
		return consumer.GroupInfo{}, apiconv.FromConnect(asUnavailable(err))
	}
	return apiconv.GroupFromProto(res.Msg.GetGroup())
}

// Groups describes every group the token may read, sorted by name.
func (c *Client) Groups(ctx context.Context) ([]consumer.GroupInfo, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	res, err := retry(ctx, c, func() (*connect.Response[rewindv1.ListGroupsResponse], error) {
		return c.groups.ListGroups(ctx, connect.NewRequest(&rewindv1.ListGroupsRequest{}))
	})
	if err != nil {
		return nil, err
	}
	out := make([]consumer.GroupInfo, 0, len(res.Msg.GetGroups()))
	for _, p := range res.Msg.GetGroups() {
		in, err := apiconv.GroupFromProto(p)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// GroupInfo describes one group and its lag.
func (c *Client) GroupInfo(ctx context.Context, group string) (consumer.GroupInfo, error) {
	if err := c.checkOpen(); err != nil {
		return consumer.GroupInfo{}, err
	}
	res, err := retry(ctx, c, func() (*connect.Response[rewindv1.GroupInfoResponse], error) {
		return c.groups.GroupInfo(ctx, connect.NewRequest(&rewindv1.GroupInfoRequest{Group: group}))
	})
	if err != nil {
		return consumer.GroupInfo{}, err
	}
	return apiconv.GroupFromProto(res.Msg.GetGroup())
}

// DeleteGroup deletes a group and its parked events.
func (c *Client) DeleteGroup(ctx context.Context, group string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	_, err := c.groups.DeleteGroup(ctx, connect.NewRequest(&rewindv1.DeleteGroupRequest{Group: group}))
	return apiconv.FromConnect(asUnavailable(err))
}

// ResetGroup moves a group's ack floor, or without opts.Execute returns
// only the plan (see consumer.Engine.Reset).
func (c *Client) ResetGroup(ctx context.Context, group string, opts consumer.ResetOptions) (consumer.ResetPlan, error) {
	if err := c.checkOpen(); err != nil {
		return consumer.ResetPlan{}, err
	}
	req := apiconv.ResetToProto(group, opts)
	call := func() (*connect.Response[rewindv1.ResetGroupResponse], error) {
		return c.groups.ResetGroup(ctx, connect.NewRequest(req))
	}
	var res *connect.Response[rewindv1.ResetGroupResponse]
	var err error
	if opts.Execute {
		res, err = call()
		err = apiconv.FromConnect(asUnavailable(err))
	} else {
		res, err = retry(ctx, c, call) // a plan changes nothing
	}
	if err != nil {
		return consumer.ResetPlan{}, err
	}
	plan := apiconv.PlanFromProto(res.Msg.GetPlan())
	plan.Clamped = res.Header().Get(apiconv.HeaderResetClamped) == "true"
	plan.Note = res.Header().Get(apiconv.HeaderResetNote)
	return plan, nil
}

// Parked lists a group's parked events by position, one page.
func (c *Client) Parked(ctx context.Context, group string, opts consumer.ParkedOptions) ([]consumer.ParkedEntry, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, &rewind.ValidationError{Field: "limit", Value: fmt.Sprint(opts.Limit), Reason: "must not be negative"}
	}
	res, err := retry(ctx, c, func() (*connect.Response[rewindv1.ListParkedResponse], error) {
		return c.groups.ListParked(ctx, connect.NewRequest(&rewindv1.ListParkedRequest{Group: group,
			After: uint64(opts.After), Limit: uint32(opts.Limit)}))
	})
	if err != nil {
		return nil, err
	}
	out := make([]consumer.ParkedEntry, 0, len(res.Msg.GetParked()))
	for _, p := range res.Msg.GetParked() {
		e, err := apiconv.ParkedFromProto(p)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// ReplayParked hands a group's parked events back to its members and
// returns how many it hands back.
func (c *Client) ReplayParked(ctx context.Context, group string, opts consumer.ReplayOptions) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	res, err := c.groups.ReplayParked(ctx, connect.NewRequest(&rewindv1.ReplayParkedRequest{Group: group,
		Through: uint64(opts.Through)}))
	if err != nil {
		return 0, apiconv.FromConnect(asUnavailable(err))
	}
	return int(res.Msg.GetCount()), nil
}

// PurgeParked removes a group's parked events and returns how many.
func (c *Client) PurgeParked(ctx context.Context, group string, opts consumer.PurgeOptions) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	res, err := c.groups.PurgeParked(ctx, connect.NewRequest(&rewindv1.PurgeParkedRequest{Group: group,
		Through: uint64(opts.Through)}))
	if err != nil {
		return 0, apiconv.FromConnect(asUnavailable(err))
	}
	return int(res.Msg.GetPurged()), nil
}
