package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

// session is what a client verb runs with.
type session struct {
	c   *client.Client
	ctx context.Context
	out io.Writer
	g   *globals
}

func (g *globals) session(cmd *cobra.Command) (*session, func(), error) {
	if g.output != "text" && g.output != "json" {
		return nil, nil, fmt.Errorf("-o %q: want text or json", g.output)
	}
	tlsCfg, err := loadTLS(g.tlsCert, g.tlsKey, g.tlsCA)
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(client.Config{Endpoints: splitList(g.endpoints), TLS: tlsCfg, RequestTimeout: g.timeout})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
	return &session{c: c, ctx: ctx, out: cmd.OutOrStdout(), g: g}, func() { cancel(); c.Close() }, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (s *session) json(v any) error {
	enc := json.NewEncoder(s.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// verb builds a client command: run gets a session, and its error is a
// run-time failure.
func verb(g *globals, use, short string, args cobra.PositionalArgs, run func(*session, []string) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: args,
		RunE: func(cmd *cobra.Command, a []string) error {
			s, done, err := g.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			return failed(run(s, a))
		},
	}
}

func clientCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		putCmd(g), getCmd(g), delCmd(g), appendCmd(g), listCmd(g),
		membersCmd(g), transferCmd(g), statusCmd(g), alarmCmd(g),
		rangeCmd(g), delRangeCmd(g), txnCmd(g), compactCmd(g), watchCmd(g), leaseCmd(g),
	}
}

// writeFlags are the options every write verb shares.
type writeFlags struct {
	ifMatch        uint64
	ifNoneMatch    bool
	idempotencyKey string
}

func (w *writeFlags) add(cmd *cobra.Command, create bool) {
	cmd.Flags().Uint64Var(&w.ifMatch, "if-match", 0, "apply only if the key is at this revision")
	if create {
		cmd.Flags().BoolVar(&w.ifNoneMatch, "if-none-match", false, "apply only if the key does not exist")
	}
	cmd.Flags().StringVar(&w.idempotencyKey, "idempotency-key", "", "token that makes retries of this write apply once (default: generated)")
}

func (w *writeFlags) options() []client.WriteOption {
	var o []client.WriteOption
	if w.ifMatch != 0 {
		o = append(o, client.IfMatch(w.ifMatch))
	}
	if w.ifNoneMatch {
		o = append(o, client.IfNoneMatch())
	}
	if w.idempotencyKey != "" {
		o = append(o, client.WithIdempotencyKey(w.idempotencyKey))
	}
	return o
}

// valueArg reads VALUE, or stdin when it is "-".
func valueArg(cmd *cobra.Command, v string) ([]byte, error) {
	if v != "-" {
		return []byte(v), nil
	}
	return io.ReadAll(cmd.InOrStdin())
}

// wrote reports a write and the revision it made (the key's new ETag).
func (s *session) wrote(op, key string, rev uint64) error {
	if s.g.output == "json" {
		return s.json(map[string]any{"op": op, "key": key, "rev": rev})
	}
	_, err := fmt.Fprintf(s.out, "%s %s at revision %d\n", op, key, rev)
	return err
}

func putCmd(g *globals) *cobra.Command {
	return writeCmd(g, "put", "Set a key (VALUE - reads stdin)", true)
}

func appendCmd(g *globals) *cobra.Command {
	return writeCmd(g, "append", "Append to a key's value, creating it (VALUE - reads stdin)", false)
}

func writeCmd(g *globals, name, short string, create bool) *cobra.Command {
	w := &writeFlags{}
	var lease int64
	var cmd *cobra.Command
	cmd = verb(g, name+" KEY VALUE", short, cobra.ExactArgs(2), func(s *session, a []string) error {
		v, err := valueArg(cmd, a[1])
		if err != nil {
			return err
		}
		var idx uint64
		switch {
		case name == "put" && lease != 0:
			idx, err = s.c.PutWithLease(s.ctx, a[0], v, lease, w.options()...)
		case name == "put":
			idx, err = s.c.Put(s.ctx, a[0], v, w.options()...)
		default:
			idx, err = s.c.Append(s.ctx, a[0], v, w.options()...)
		}
		if err != nil {
			return err
		}
		return s.wrote(name, a[0], idx)
	})
	w.add(cmd, create)
	if name == "put" {
		cmd.Flags().Int64Var(&lease, "lease", 0, "attach the key to this lease (its keys go when it expires)")
	}
	return cmd
}

func delCmd(g *globals) *cobra.Command {
	w := &writeFlags{}
	cmd := verb(g, "del KEY", "Delete a key", cobra.ExactArgs(1), func(s *session, a []string) error {
		idx, err := s.c.Delete(s.ctx, a[0], w.options()...)
		if err != nil {
			return err
		}
		return s.wrote("del", a[0], idx)
	})
	w.add(cmd, false)
	return cmd
}

func checkConsistency(level string) error {
	switch level {
	case api.Linearizable, api.Lease, api.Stale:
		return nil
	}
	return fmt.Errorf("--consistency %q: want linearizable, lease or stale", level)
}

func getCmd(g *globals) *cobra.Command {
	var level string
	cmd := verb(g, "get KEY", "Read a key", cobra.ExactArgs(1), func(s *session, a []string) error {
		kv, err := s.c.Get(s.ctx, a[0], client.WithConsistency(level))
		if err != nil {
			return err
		}
		if s.g.output == "json" {
			return s.json(api.NewItem(kv.Key, kv.Value, kv.Rev))
		}
		s.out.Write(kv.Value)
		if utf8.Valid(kv.Value) && !strings.HasSuffix(string(kv.Value), "\n") {
			fmt.Fprintln(s.out)
		}
		return nil
	})
	cmd.Flags().StringVar(&level, "consistency", api.Linearizable, "linearizable, lease or stale")
	cmd.PreRunE = func(*cobra.Command, []string) error { return checkConsistency(level) }
	return cmd
}

func listCmd(g *globals) *cobra.Command {
	var level string
	var limit int
	cmd := verb(g, "list [PREFIX]", "List keys with a prefix, in order", cobra.MaximumNArgs(1), func(s *session, a []string) error {
		prefix := ""
		if len(a) == 1 {
			prefix = a[0]
		}
		items, more, err := s.c.List(s.ctx, prefix, limit, client.WithConsistency(level))
		if err != nil {
			return err
		}
		if s.g.output == "json" {
			out := api.ListResponse{Items: make([]api.Item, 0, len(items)), More: more}
			for _, it := range items {
				out.Items = append(out.Items, api.NewItem(it.Key, it.Value, it.Rev))
			}
			return s.json(out)
		}
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tREV\tVALUE")
		for _, it := range items {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", it.Key, it.Rev, printable(it.Value))
		}
		if more {
			fmt.Fprintln(tw, "...\t\t(more; raise --limit)")
		}
		return tw.Flush()
	})
	cmd.Flags().StringVar(&level, "consistency", api.Linearizable, "linearizable, lease or stale")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many keys (0: the server's maximum)")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if limit < 0 {
			return errors.New("--limit must not be negative")
		}
		return checkConsistency(level)
	}
	return cmd
}

// printable shows a value on one line: text as is (shortened), binary as hex.
func printable(v []byte) string {
	const maxShown = 60
	if !utf8.Valid(v) || strings.ContainsAny(string(v), "\n\r\t") {
		s := fmt.Sprintf("%x", v)
		if len(s) > maxShown {
			s = s[:maxShown] + "..."
		}
		return "0x" + s
	}
	if len(v) > maxShown {
		return string(v[:maxShown]) + "..."
	}
	return string(v)
}

func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("member id %q: want a positive integer", s)
	}
	return id, nil
}
