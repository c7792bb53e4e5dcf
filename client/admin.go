package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/raftkv/raftkv/api"
)

// Cluster returns the cluster as the leader (or, failing it, any member)
// sees it.
func (c *Client) Cluster(ctx context.Context) (*api.Cluster, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: api.PathCluster, toLeader: true, idempotent: true})
	if err != nil {
		return nil, err
	}
	return c.decodeCluster(resp)
}

// ClusterAt returns the cluster as the member at endpoint sees it.
func (c *Client) ClusterAt(ctx context.Context, endpoint string) (*api.Cluster, error) {
	base, err := c.baseURL(endpoint)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, base+api.PathCluster, request{method: http.MethodGet})
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", endpoint, err)
	}
	if resp.status != http.StatusOK {
		return nil, apiError(resp)
	}
	return c.decodeCluster(resp)
}

func (c *Client) decodeCluster(resp *response) (*api.Cluster, error) {
	var cl api.Cluster
	if err := json.Unmarshal(resp.body, &cl); err != nil {
		return nil, fmt.Errorf("client: decoding cluster: %w", err)
	}
	return &cl, nil
}

// admin sends a membership change to the leader. It is resent only when
// it surely did not arrive (a refused connection, a redirect, 503, 429).
func (c *Client) admin(ctx context.Context, method, path string, body any) (*response, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	return c.do(ctx, request{method: method, path: path, body: b, header: h, toLeader: true})
}

func (c *Client) adminCluster(ctx context.Context, method, path string, body any) (*api.Cluster, error) {
	resp, err := c.admin(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	return c.decodeCluster(resp)
}

// AddMember adds a member, a learner unless m.Voter.
func (c *Client) AddMember(ctx context.Context, m api.Member) (*api.Cluster, error) {
	return c.adminCluster(ctx, http.MethodPost, api.PathMembers, m)
}

// PromoteMember makes a learner a voter once it has caught up.
func (c *Client) PromoteMember(ctx context.Context, id uint64) (*api.Cluster, error) {
	return c.adminCluster(ctx, http.MethodPost, fmt.Sprintf("%s/%d/promote", api.PathMembers, id), nil)
}

// RemoveMember removes a member.
func (c *Client) RemoveMember(ctx context.Context, id uint64) (*api.Cluster, error) {
	return c.adminCluster(ctx, http.MethodDelete, fmt.Sprintf("%s/%d", api.PathMembers, id), nil)
}

// SetVoters moves to exactly this voter set in one joint-consensus change.
func (c *Client) SetVoters(ctx context.Context, voters []uint64) (*api.Cluster, error) {
	return c.adminCluster(ctx, http.MethodPut, api.PathVoters, api.VotersRequest{Voters: voters})
}

// TransferLeadership hands leadership to member id (0: the leader picks the
// most caught-up voter) and returns the new leader.
func (c *Client) TransferLeadership(ctx context.Context, id uint64) (uint64, error) {
	resp, err := c.admin(ctx, http.MethodPost, api.PathTransfer, api.TransferRequest{ID: id})
	if err != nil {
		return 0, err
	}
	var tr api.TransferResponse
	if err := json.Unmarshal(resp.body, &tr); err != nil {
		return 0, fmt.Errorf("client: decoding transfer answer: %w", err)
	}
	c.setLeader("")
	return tr.Leader, nil
}

// SnapshotAt makes the member at endpoint take a snapshot now.
func (c *Client) SnapshotAt(ctx context.Context, endpoint string) (uint64, error) {
	base, err := c.baseURL(endpoint)
	if err != nil {
		return 0, err
	}
	resp, err := c.send(ctx, base+api.PathSnapshot, request{method: http.MethodPost})
	if err != nil {
		return 0, fmt.Errorf("client: %s: %w", endpoint, err)
	}
	if resp.status != http.StatusOK {
		return 0, apiError(resp)
	}
	var s api.SnapshotResponse
	if err := json.Unmarshal(resp.body, &s); err != nil {
		return 0, fmt.Errorf("client: decoding snapshot answer: %w", err)
	}
	return s.Index, nil
}

// Alarms lists the alarms raised, as the member asked sees them.
func (c *Client) Alarms(ctx context.Context) (*api.AlarmsResponse, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: api.PathAlarms})
	if err != nil {
		return nil, err
	}
	return decodeAlarms(resp)
}

// DisarmAlarms clears the alarm of member id (0: every member's) and
// returns those still raised. A member whose cause is still there raises
// its alarm again.
func (c *Client) DisarmAlarms(ctx context.Context, id uint64) (*api.AlarmsResponse, error) {
	resp, err := c.admin(ctx, http.MethodPost, api.PathAlarms, api.AlarmRequest{Action: api.AlarmDisarm, Member: id})
	if err != nil {
		return nil, err
	}
	return decodeAlarms(resp)
}

func decodeAlarms(resp *response) (*api.AlarmsResponse, error) {
	var a api.AlarmsResponse
	if err := json.Unmarshal(resp.body, &a); err != nil {
		return nil, fmt.Errorf("client: decoding alarms: %w", err)
	}
	return &a, nil
}
