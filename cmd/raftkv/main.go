package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runError marks a failure at run time (exit 1); every other error out of
// cobra is a usage error (exit 2).
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

func failed(err error) error {
	if err == nil {
		return nil
	}
	return runError{err}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, errorLine(err))
	var re runError
	if errors.As(err, &re) {
		return 1
	}
	return 2
}

// errorLine is the one line printed for a failed command: prefixed with
// the program's name once, although the client's errors already carry it.
func errorLine(err error) string {
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	return "raftkv: " + strings.TrimPrefix(msg, "raftkv: ")
}

// globals are the flags every client verb shares.
type globals struct {
	endpoints string
	output    string
	timeout   time.Duration
	tlsCert   string
	tlsKey    string
	tlsCA     string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "raftkv",
		Short:         "A replicated key-value store on Raft",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	pf := root.PersistentFlags()
	pf.StringVar(&g.endpoints, "endpoints", "127.0.0.1:8001", "members' client addresses, comma-separated")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "deadline of one command")
	pf.StringVar(&g.tlsCert, "tls-cert", "", "certificate file (mutual TLS)")
	pf.StringVar(&g.tlsKey, "tls-key", "", "private key file (mutual TLS)")
	pf.StringVar(&g.tlsCA, "tls-ca", "", "CA certificate file (mutual TLS)")
	root.AddCommand(newServerCmd(g), newDevCmd(g), newBenchCmd(g))
	root.AddCommand(newSnapshotCmd(g), newHealthCmd(g))
	root.AddCommand(clientCommands(g)...)
	return root
}

// bindEnv sets every flag not given on the command line from
// RAFTKV_<FLAG>, if that is set.
func bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "RAFTKV_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, serr)
				return
			}
			f.Changed = true
		}
	})
	return err
}

// loadTLS builds a mutual-TLS config from the three files, or nil when
// none is given.
func loadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" && caFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("--tls-cert, --tls-key and --tls-ca go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading TLS key pair: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

func jsonTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
