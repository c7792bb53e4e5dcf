package etcdapi_test

import (
	"context"
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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// testTLS makes a CA and one certificate for 127.0.0.1 (server and client)
// and returns mutual TLS configurations for members and for a client.
func testTLS(t *testing.T) (member, client *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "member"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	member = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	return member, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}
}

// TestEtcdMutualTLS runs the cluster with mutual TLS on every listener: an
// etcd client with a certificate writes through a follower (forwarded to
// the leader over TLS) and reads; one without a certificate is refused.
func TestEtcdMutualTLS(t *testing.T) {
	member, clientTLS := testTLS(t)
	c := newEClusterTLS(t, member)
	ctx := ctxT(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.addrs[c.follower()]}, TLS: clientTLS,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "secure", "yes"); err != nil {
		t.Fatalf("put over mutual TLS: %v", err)
	}
	if g, err := cli.Get(ctx, "secure"); err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "yes" {
		t.Fatalf("get over mutual TLS: %+v %v", g, err)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members[0].PeerURLs) != 1 || ml.Members[0].PeerURLs[0][:8] != "https://" {
		t.Fatalf("member list over TLS: %+v %v", ml, err)
	}
	noCert := &tls.Config{RootCAs: clientTLS.RootCAs}
	bad, err := clientv3.New(clientv3.Config{Endpoints: []string{c.addrs[0]}, TLS: noCert, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err == nil {
		defer bad.Close()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := bad.Get(sctx, "secure"); err == nil {
			t.Fatal("a client without a certificate was answered")
		}
	}
}
