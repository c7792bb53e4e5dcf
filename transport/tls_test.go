package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// testPKI is a throwaway CA and the means to issue leaf certificates for
// loopback, made fresh in each test.
type testPKI struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	serial int64
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "raftkv test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, caKey: key, pool: pool, serial: 1}
}

// leaf issues a certificate valid as both server and client for 127.0.0.1,
// as a member is both.
func (p *testPKI) leaf(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// memberTLS is the one configuration a member passes: it serves with and
// presents its certificate, and trusts the CA both ways.
func (p *testPKI) memberTLS(t *testing.T, name string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.leaf(t, name)},
		RootCAs:      p.pool,
		ClientCAs:    p.pool,
		MinVersion:   tls.VersionTLS13,
	}
}

// Two members with mutual TLS exchange messages; a client without a
// certificate, and one speaking plain TCP, are refused and deliver nothing.
func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	a := newMember(t, 1, "", func(c *Config) { c.TLS = pki.memberTLS(t, "m1") })
	b := newMember(t, 2, "", func(c *Config) { c.TLS = pki.memberTLS(t, "m2") })
	connect(t, a, b)
	expectFlow(t, a, b, 1)
	expectFlow(t, b, a, 2)

	t.Run("client without certificate", func(t *testing.T) {
		refused := b.tr.Stats().RefusedConns
		c, err := tls.Dial("tcp", b.addr(), &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS13})
		if err == nil {
			defer c.Close()
			// TLS 1.3 lets the client finish first; the refusal shows on read.
			c.Write(append(hsBytes(func(h *handshake) { h.From = 1 }), msgFrame(heartbeat(1, 2, 99))...))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var buf [ackLen]byte
			if _, err = c.Read(buf[:]); err == nil {
				t.Fatal("a client without a certificate got an answer")
			}
		}
		waitFor(t, "refusal counted", func() bool { return b.tr.Stats().RefusedConns > refused })
		waitFor(t, "log line for the refused TLS client", func() bool { return b.log.count("TLS handshake failed") > 0 })
	})
	t.Run("plain TCP", func(t *testing.T) {
		c, err := net.Dial("tcp", b.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(hsBytes(func(h *handshake) { h.From = 1 }))
		if got := expectClosed(t, c); len(got) == ackLen && string(got[:4]) == handshakeMagic {
			t.Fatal("plain TCP client got a transport ack")
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		other := newTestPKI(t)
		cfg := other.memberTLS(t, "intruder")
		cfg.RootCAs = pki.pool // trusts the cluster, but the cluster does not trust it
		c, err := tls.Dial("tcp", b.addr(), cfg)
		if err == nil {
			defer c.Close()
			c.Write(hsBytes(func(h *handshake) { h.From = 1 }))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var buf [ackLen]byte
			if _, err = c.Read(buf[:]); err == nil {
				t.Fatal("a client with a foreign certificate got an answer")
			}
		}
	})
	select {
	case m := <-b.rec.msgs:
		if m.Commit == 99 {
			t.Fatalf("message from an unauthenticated client delivered: %v", m)
		}
	default:
	}
	expectFlow(t, a, b, 3)
}
