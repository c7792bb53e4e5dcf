package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// writeCerts makes a CA and one certificate (for 127.0.0.1, usable as
// server and client) signed by it, and returns the three file names.
func writeCerts(t *testing.T) (certFile, keyFile, caFile string) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "raftkv test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "raftkv member"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile, caFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	for name, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: leafDER},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
	} {
		if err := os.WriteFile(name, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, caFile
}

// TestMutualTLS runs the cluster with --tls-cert/--tls-key/--tls-ca: peers
// and clients must present certificates; a client with one reads and
// writes, one without is refused.
func TestMutualTLS(t *testing.T) {
	certFile, keyFile, caFile := writeCerts(t)
	c := &cluster{t: t, procs: map[uint64]*proc{}}
	var spec []string
	for id := uint64(1); id <= 3; id++ {
		p := c.add(id)
		spec = append(spec, p.peerSpec())
	}
	c.spec = strings.Join(spec, ",")
	t.Cleanup(func() {
		for _, p := range c.procs {
			p.kill()
		}
	})
	for id := uint64(1); id <= 3; id++ {
		c.start(id, "--cluster", c.spec, "--tls-cert", certFile, "--tls-key", keyFile, "--tls-ca", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	cl, err := client.New(client.Config{Endpoints: c.endpoints(),
		TLS: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := within(t, 40*time.Second)
	if _, err := cl.Put(ctx, "secure", []byte("yes")); err != nil {
		t.Fatalf("put over mutual TLS: %v", err)
	}
	if kv, err := cl.Get(ctx, "secure"); err != nil || string(kv.Value) != "yes" {
		t.Fatalf("get over mutual TLS: %v %v", kv, err)
	}
	// The client maps the leader id an answer names to its address by a
	// /v1/cluster fetch of its own, in the background, at most every
	// 500ms and only when an answer arrives; right after start-up the
	// members may not have published their client addresses yet. Keep
	// asking until it has learned one.
	leaderDeadline := time.Now().Add(20 * time.Second)
	for cl.Leader() == "" && time.Now().Before(leaderDeadline) {
		if _, err := cl.Get(ctx, "secure"); err != nil {
			t.Fatalf("get over mutual TLS: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.HasPrefix(cl.Leader(), "https://") {
		t.Fatalf("leader URL %q is not https", cl.Leader())
	}
	// No client certificate: the handshake fails.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	if resp, err := hc.Get("https://" + c.endpoints()[0] + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("request without a client certificate answered %d", resp.StatusCode)
	}
}
