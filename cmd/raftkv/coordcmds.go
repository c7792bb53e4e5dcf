package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

// rangeFlags select a key or a range.
type rangeFlags struct {
	prefix, fromKey bool
	end             string
}

func (r *rangeFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&r.prefix, "prefix", false, "every key that starts with KEY")
	cmd.Flags().BoolVar(&r.fromKey, "from-key", false, "every key from KEY on")
	cmd.Flags().StringVar(&r.end, "end", "", "range end (exclusive): [KEY, END)")
}

func (r *rangeFlags) options() []client.OpOption {
	switch {
	case r.prefix:
		return []client.OpOption{client.WithPrefix()}
	case r.fromKey:
		return []client.OpOption{client.WithFromKey()}
	case r.end != "":
		return []client.OpOption{client.WithRangeEnd(r.end)}
	}
	return nil
}

func (s *session) printKV(kv *client.KeyValue) error {
	if s.g.output == "json" {
		k, v, enc := api.EncodeKV(kv.Key, kv.Value)
		return s.json(api.KeyValue{Key: k, Value: v, Encoding: enc, CreateRevision: kv.CreateRevision,
			ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease})
	}
	_, err := fmt.Fprintf(s.out, "%s\t%q\tcreate=%d mod=%d version=%d lease=%d\n", kv.Key, kv.Value,
		kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
	return err
}

func rangeCmd(g *globals) *cobra.Command {
	var rf rangeFlags
	var rev, limit int64
	var countOnly, keysOnly bool
	var level string
	cmd := verb(g, "range KEY", "Read a key or a range, now or at a past revision", cobra.ExactArgs(1), func(s *session, a []string) error {
		opts := rf.options()
		if rev != 0 {
			opts = append(opts, client.WithRev(rev))
		}
		if limit != 0 {
			opts = append(opts, client.WithLimit(limit))
		}
		if countOnly {
			opts = append(opts, client.WithCountOnly())
		}
		if keysOnly {
			opts = append(opts, client.WithKeysOnly())
		}
		r, err := s.c.Range(s.ctx, a[0], opts, client.WithConsistency(level))
		if err != nil {
			return err
		}
		for i := range r.KVs {
			if err := s.printKV(&r.KVs[i]); err != nil {
				return err
			}
		}
		if s.g.output != "json" {
			fmt.Fprintf(s.out, "# %d keys at revision %d, more=%v\n", r.Count, r.Revision, r.More)
		}
		return nil
	})
	rf.add(cmd)
	cmd.Flags().Int64Var(&rev, "rev", 0, "read at this past revision (0: now)")
	cmd.Flags().Int64Var(&limit, "limit", 0, "at most this many keys")
	cmd.Flags().BoolVar(&countOnly, "count-only", false, "print only the count")
	cmd.Flags().BoolVar(&keysOnly, "keys-only", false, "leave values out")
	cmd.Flags().StringVar(&level, "consistency", api.Linearizable, "linearizable, lease or stale")
	return cmd
}

func delRangeCmd(g *globals) *cobra.Command {
	var rf rangeFlags
	cmd := verb(g, "del-range KEY", "Delete a key or a range in one revision", cobra.ExactArgs(1), func(s *session, a []string) error {
		n, _, rev, err := s.c.DeleteRange(s.ctx, a[0], rf.options()...)
		if err != nil {
			return err
		}
		if s.g.output == "json" {
			return s.json(map[string]any{"deleted": n, "revision": rev})
		}
		_, err = fmt.Fprintf(s.out, "deleted %d keys at revision %d\n", n, rev)
		return err
	})
	rf.add(cmd)
	return cmd
}

func compactCmd(g *globals) *cobra.Command {
	return verb(g, "compact REVISION", "Discard the history before REVISION", cobra.ExactArgs(1), func(s *session, a []string) error {
		rev, err := strconv.ParseInt(a[0], 10, 64)
		if err != nil {
			return fmt.Errorf("revision %q: %w", a[0], err)
		}
		if err := s.c.Compact(s.ctx, rev); err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.out, "compacted to revision %d\n", rev)
		return err
	})
}

// txnCmd sends a transaction written as api.TxnRequest JSON (stdin, or
// --file) and prints the answer as JSON.
func txnCmd(g *globals) *cobra.Command {
	var file string
	var cmd *cobra.Command
	cmd = verb(g, "txn", "Run a transaction given as JSON on stdin (see docs/api.md)", cobra.NoArgs, func(s *session, a []string) error {
		var in io.Reader = cmd.InOrStdin()
		if file != "" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		var req api.TxnRequest
		dec := json.NewDecoder(io.LimitReader(in, 16<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return fmt.Errorf("reading the transaction: %w", err)
		}
		cmps, success, failure, err := fromTxnRequest(&req)
		if err != nil {
			return err
		}
		r, err := s.c.Txn(s.ctx, cmps, success, failure)
		if err != nil {
			return err
		}
		if s.g.output == "json" {
			return s.json(r)
		}
		fmt.Fprintf(s.out, "succeeded=%v revision=%d\n", r.Succeeded, r.Revision)
		for i, o := range r.Results {
			switch {
			case o.Range != nil:
				fmt.Fprintf(s.out, "# op %d: %d keys\n", i, o.Range.Count)
				for j := range o.Range.KVs {
					s.printKV(&o.Range.KVs[j])
				}
			case o.Deleted != 0:
				fmt.Fprintf(s.out, "# op %d: deleted %d\n", i, o.Deleted)
			default:
				fmt.Fprintf(s.out, "# op %d: ok\n", i)
			}
		}
		return nil
	})
	cmd.Flags().StringVar(&file, "file", "", "read the transaction from this file instead of stdin")
	return cmd
}

// fromTxnRequest turns the JSON form into client calls (text keys and
// values; base64 with "encoding":"base64").
func fromTxnRequest(req *api.TxnRequest) ([]client.Cmp, []client.Op, []client.Op, error) {
	var cmps []client.Cmp
	for i, c := range req.Compare {
		key, value, err := api.DecodeText(c.Key, c.Value, req.Encoding)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("compare %d: %w", i, err)
		}
		var t client.CmpTarget
		var operand any = c.Number
		switch c.Target {
		case "value":
			t, operand = client.Value(key), value
		case "version":
			t = client.Version(key)
		case "create":
			t = client.CreateRevision(key)
		case "mod":
			t = client.ModRevision(key)
		case "lease":
			t = client.LeaseOf(key)
		default:
			return nil, nil, nil, fmt.Errorf("compare %d: target %q: want value, version, create, mod or lease", i, c.Target)
		}
		cmp := client.Compare(t, c.Op, operand)
		if c.Prefix {
			cmp = cmp.WithPrefix()
		}
		cmps = append(cmps, cmp)
	}
	ops := func(in []api.TxnOp) ([]client.Op, error) {
		var out []client.Op
		for i, o := range in {
			key, value, err := api.DecodeText(o.Key, o.Value, req.Encoding)
			if err != nil {
				return nil, fmt.Errorf("operation %d: %w", i, err)
			}
			var opts []client.OpOption
			if o.Prefix {
				opts = append(opts, client.WithPrefix())
			}
			if o.RangeEnd != "" {
				end, _, err := api.DecodeText(o.RangeEnd, "", req.Encoding)
				if err != nil {
					return nil, err
				}
				opts = append(opts, client.WithRangeEnd(end))
			}
			if o.Lease != 0 {
				opts = append(opts, client.WithLease(o.Lease))
			}
			if o.PrevKV {
				opts = append(opts, client.WithPrevKV())
			}
			if o.Revision != 0 {
				opts = append(opts, client.WithRev(o.Revision))
			}
			if o.Limit != 0 {
				opts = append(opts, client.WithLimit(o.Limit))
			}
			switch o.Op {
			case "put":
				out = append(out, client.OpPut(key, value, opts...))
			case "delete":
				out = append(out, client.OpDelete(key, opts...))
			case "range":
				out = append(out, client.OpGet(key, opts...))
			default:
				return nil, fmt.Errorf("operation %d: op %q: want put, delete or range", i, o.Op)
			}
		}
		return out, nil
	}
	success, err := ops(req.Success)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("success %w", err)
	}
	failure, err := ops(req.Failure)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failure %w", err)
	}
	return cmps, success, failure, nil
}

// longSession is a session for a verb that runs until interrupted: its
// context ends on Ctrl-C rather than after --timeout.
func longSession(g *globals, cmd *cobra.Command) (*session, func(), error) {
	s, done, err := g.session(cmd)
	if err != nil {
		return nil, nil, err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	s.ctx = ctx
	return s, func() { stop(); done() }, nil
}

func watchCmd(g *globals) *cobra.Command {
	var prefix, prevKV bool
	var rev int64
	var progress time.Duration
	cmd := &cobra.Command{
		Use:   "watch KEY",
		Short: "Print every change of a key (or a prefix) as it happens, one event a line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			s, done, err := longSession(g, cmd)
			if err != nil {
				return err
			}
			defer done()
			opts := []client.WatchOption{}
			if prefix {
				opts = append(opts, client.WithWatchPrefix())
			}
			if rev != 0 {
				opts = append(opts, client.WithWatchRev(rev))
			}
			if prevKV {
				opts = append(opts, client.WithWatchPrevKV())
			}
			if progress != 0 {
				opts = append(opts, client.WithProgressInterval(progress))
			}
			for wr := range s.c.Watch(s.ctx, a[0], opts...) {
				if wr.Err != nil {
					return failed(wr.Err)
				}
				if err := s.printWatch(&wr, progress != 0); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "watch every key that starts with KEY")
	cmd.Flags().Int64Var(&rev, "rev", 0, "start at this revision, replaying history (default: now)")
	cmd.Flags().BoolVar(&prevKV, "prev-kv", false, "print the value each change replaced")
	cmd.Flags().DurationVar(&progress, "progress", 0, "print progress notifications at this interval")
	return cmd
}

func (s *session) printWatch(wr *client.WatchResponse, progress bool) error {
	if wr.Progress {
		if progress {
			_, err := fmt.Fprintf(s.out, "PROGRESS %d\n", wr.Revision)
			return err
		}
		return nil
	}
	for _, e := range wr.Events {
		if s.g.output == "json" {
			if err := json.NewEncoder(s.out).Encode(e); err != nil {
				return err
			}
			continue
		}
		var err error
		switch e.Type {
		case "delete":
			_, err = fmt.Fprintf(s.out, "DELETE %s rev=%d\n", e.KV.Key, e.KV.ModRevision)
		default:
			_, err = fmt.Fprintf(s.out, "PUT %s %q rev=%d version=%d\n", e.KV.Key, e.KV.Value, e.KV.ModRevision, e.KV.Version)
		}
		if err != nil {
			return err
		}
		if e.PrevKV != nil {
			fmt.Fprintf(s.out, "  was %q rev=%d\n", e.PrevKV.Value, e.PrevKV.ModRevision)
		}
	}
	return nil
}

func leaseCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "lease", Short: "Grant, keep alive, revoke and inspect leases"}
	parseID := func(s string) (int64, error) {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			return 0, fmt.Errorf("lease id %q: want a positive integer", s)
		}
		return id, nil
	}
	grant := verb(g, "grant TTL", "Grant a lease of TTL seconds; prints its id", cobra.ExactArgs(1), func(s *session, a []string) error {
		ttl, err := strconv.ParseInt(a[0], 10, 64)
		if err != nil {
			return fmt.Errorf("TTL %q: %w", a[0], err)
		}
		id, granted, err := s.c.Grant(s.ctx, ttl)
		if err != nil {
			return err
		}
		if s.g.output == "json" {
			return s.json(map[string]int64{"id": id, "ttl": granted})
		}
		_, err = fmt.Fprintf(s.out, "lease %d granted with TTL %ds\n", id, granted)
		return err
	})
	revoke := verb(g, "revoke ID", "Revoke a lease, deleting its keys", cobra.ExactArgs(1), func(s *session, a []string) error {
		id, err := parseID(a[0])
		if err != nil {
			return err
		}
		if err := s.c.Revoke(s.ctx, id); err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.out, "lease %d revoked\n", id)
		return err
	})
	ttl := verb(g, "ttl ID", "Print a lease's remaining TTL (and its keys with --keys)", cobra.ExactArgs(1), nil)
	var keys bool
	ttl.RunE = func(cmd *cobra.Command, a []string) error {
		s, done, err := g.session(cmd)
		if err != nil {
			return err
		}
		defer done()
		id, err := parseID(a[0])
		if err != nil {
			return err
		}
		st, err := s.c.TimeToLive(s.ctx, id, keys)
		if err != nil {
			return failed(err)
		}
		if s.g.output == "json" {
			return s.json(st)
		}
		fmt.Fprintf(s.out, "lease %d: %ds remaining of %ds\n", st.ID, st.TTL, st.GrantedTTL)
		for _, k := range st.Keys {
			fmt.Fprintln(s.out, k)
		}
		return nil
	}
	ttl.Flags().BoolVar(&keys, "keys", false, "list the lease's keys")
	list := verb(g, "list", "List the leases", cobra.NoArgs, func(s *session, a []string) error {
		ids, err := s.c.Leases(s.ctx)
		if err != nil {
			return err
		}
		if s.g.output == "json" {
			return s.json(ids)
		}
		for _, id := range ids {
			fmt.Fprintln(s.out, id)
		}
		return nil
	})
	keepAlive := &cobra.Command{
		Use: "keep-alive ID", Short: "Keep a lease alive until interrupted, printing each renewal", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, err := parseID(a[0])
			if err != nil {
				return err
			}
			s, done, err := longSession(g, cmd)
			if err != nil {
				return err
			}
			defer done()
			ch, err := s.c.KeepAlive(s.ctx, id)
			if err != nil {
				return failed(err)
			}
			for t := range ch {
				fmt.Fprintf(s.out, "lease %d kept alive, TTL %ds\n", id, t)
			}
			if s.ctx.Err() == nil {
				return failed(fmt.Errorf("lease %d expired or was revoked", id))
			}
			return nil
		},
	}
	cmd.AddCommand(grant, revoke, ttl, list, keepAlive)
	return cmd
}
