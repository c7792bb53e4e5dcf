package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/api"
)

// idArgs accepts n positional member ids (usage error otherwise).
func idArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := cobra.ExactArgs(n)(cmd, a); err != nil {
			return err
		}
		for _, s := range a {
			if _, err := parseID(s); err != nil {
				return err
			}
		}
		return nil
	}
}

func mustID(s string) uint64 {
	id, _ := parseID(s) // checked by idArgs
	return id
}

func (s *session) printCluster(c *api.Cluster) error {
	if s.g.output == "json" {
		return s.json(c)
	}
	fmt.Fprintf(s.out, "cluster %s  leader %d  term %d\n", c.ClusterID, c.Leader, c.Term)
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tPEER\tCLIENT")
	for _, m := range c.Members {
		role := "learner"
		if m.Voter {
			role = "voter"
		}
		if m.ID == c.Leader {
			role += " (leader)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.ID, role, m.PeerAddr, m.ClientAddr)
	}
	return tw.Flush()
}

func membersCmd(g *globals) *cobra.Command {
	cmd := verb(g, "members", "List members; add, promote and remove them", cobra.NoArgs, func(s *session, _ []string) error {
		c, err := s.c.Cluster(s.ctx)
		if err != nil {
			return err
		}
		return s.printCluster(c)
	})
	var clientAddr string
	var voter bool
	add := verb(g, "add ID PEER_ADDR", "Add a member (a learner unless --voter); then start it with --join",
		func(cmd *cobra.Command, a []string) error {
			if err := cobra.ExactArgs(2)(cmd, a); err != nil {
				return err
			}
			_, err := parseID(a[0])
			return err
		}, func(s *session, a []string) error {
			c, err := s.c.AddMember(s.ctx, api.Member{ID: mustID(a[0]), PeerAddr: a[1], ClientAddr: clientAddr, Voter: voter})
			if err != nil {
				return err
			}
			return s.printCluster(c)
		})
	add.Flags().StringVar(&clientAddr, "client-addr", "", "the member's client address (it also publishes its own)")
	add.Flags().BoolVar(&voter, "voter", false, "promote to voter once caught up")
	change := func(use, short string, f func(ctx context.Context, s *session, id uint64) (*api.Cluster, error)) *cobra.Command {
		return verb(g, use, short, idArgs(1), func(s *session, a []string) error {
			c, err := f(s.ctx, s, mustID(a[0]))
			if err != nil {
				return err
			}
			return s.printCluster(c)
		})
	}
	promote := change("promote ID", "Make a caught-up learner a voter", func(ctx context.Context, s *session, id uint64) (*api.Cluster, error) {
		return s.c.PromoteMember(ctx, id)
	})
	remove := change("remove ID", "Remove a member", func(ctx context.Context, s *session, id uint64) (*api.Cluster, error) {
		return s.c.RemoveMember(ctx, id)
	})
	voters := verb(g, "voters ID,ID,...", "Move to exactly this voter set in one joint-consensus change",
		func(cmd *cobra.Command, a []string) error {
			if err := cobra.ExactArgs(1)(cmd, a); err != nil {
				return err
			}
			for _, p := range splitList(a[0]) {
				if _, err := parseID(p); err != nil {
					return err
				}
			}
			return nil
		}, func(s *session, a []string) error {
			var ids []uint64
			for _, p := range splitList(a[0]) {
				ids = append(ids, mustID(p))
			}
			c, err := s.c.SetVoters(s.ctx, ids)
			if err != nil {
				return err
			}
			return s.printCluster(c)
		})
	cmd.AddCommand(add, promote, remove, voters)
	return cmd
}

func transferCmd(g *globals) *cobra.Command {
	return verb(g, "transfer-leader [ID]", "Hand leadership to a member (default: the most caught-up voter)",
		func(cmd *cobra.Command, a []string) error {
			if len(a) == 0 {
				return nil
			}
			return idArgs(1)(cmd, a)
		}, func(s *session, a []string) error {
			var id uint64
			if len(a) == 1 {
				id = mustID(a[0])
			}
			lead, err := s.c.TransferLeadership(s.ctx, id)
			if err != nil {
				return err
			}
			if s.g.output == "json" {
				return s.json(api.TransferResponse{Leader: lead})
			}
			_, err = fmt.Fprintf(s.out, "leader is now %d\n", lead)
			return err
		})
}

// statusCmd asks every endpoint for its own view, so that a member that
// disagrees (no leader, lagging, removed) shows up.
func statusCmd(g *globals) *cobra.Command {
	return verb(g, "status", "Show each endpoint's view: role, term, leader, indexes", cobra.NoArgs, func(s *session, _ []string) error {
		type row struct {
			Endpoint string       `json:"endpoint"`
			Cluster  *api.Cluster `json:"cluster,omitempty"`
			Error    string       `json:"error,omitempty"`
		}
		var rows []row
		for _, e := range splitList(s.g.endpoints) {
			c, err := s.c.ClusterAt(s.ctx, e)
			r := row{Endpoint: e, Cluster: c}
			if err != nil {
				r.Error = err.Error()
			}
			rows = append(rows, r)
		}
		if s.g.output == "json" {
			return s.json(rows)
		}
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENDPOINT\tID\tROLE\tTERM\tLEADER\tCOMMIT\tAPPLIED\tSNAPSHOT")
		for _, r := range rows {
			if r.Cluster == nil {
				fmt.Fprintf(tw, "%s\t-\tunreachable\t\t\t\t\t%s\n", r.Endpoint, strings.ReplaceAll(r.Error, "\t", " "))
				continue
			}
			me := r.Cluster.Self
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\n", r.Endpoint, me.ID, me.Role, me.Term,
				r.Cluster.Leader, me.CommitIndex, me.AppliedIndex, me.SnapshotIndex)
		}
		return tw.Flush()
	})
}

func (s *session) printAlarms(a *api.AlarmsResponse) error {
	if s.g.output == "json" {
		return s.json(a)
	}
	if len(a.Alarms) == 0 {
		fmt.Fprintln(s.out, "no alarms")
		return nil
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tALARM\tCAUSE")
	for _, x := range a.Alarms {
		fmt.Fprintf(tw, "%d\t%s\t%s\n", x.Member, x.Alarm, x.Cause)
	}
	return tw.Flush()
}

func alarmCmd(g *globals) *cobra.Command {
	cmd := verb(g, "alarm", "List the alarms raised (no_space: a member's disk or the state's quota is full)", cobra.NoArgs,
		func(s *session, _ []string) error {
			a, err := s.c.Alarms(s.ctx)
			if err != nil {
				return err
			}
			return s.printAlarms(a)
		})
	var member uint64
	disarm := verb(g, "disarm", "Clear alarms (every member's, or --member's); a cause still present raises its alarm again",
		cobra.NoArgs, func(s *session, _ []string) error {
			a, err := s.c.DisarmAlarms(s.ctx, member)
			if err != nil {
				return err
			}
			return s.printAlarms(a)
		})
	disarm.Flags().Uint64Var(&member, "member", 0, "clear only this member's alarm")
	list := verb(g, "list", "List the alarms raised", cobra.NoArgs, func(s *session, _ []string) error {
		a, err := s.c.Alarms(s.ctx)
		if err != nil {
			return err
		}
		return s.printAlarms(a)
	})
	cmd.AddCommand(list, disarm)
	return cmd
}
