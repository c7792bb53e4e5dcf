package main

import (
	"net"

	"github.com/raftkv/raftkv/etcdapi"
	"github.com/raftkv/raftkv/server"
)

// startEtcd serves etcd's v3 API for member s on l (nil: not at all).
// cfg is the member's configuration, for its id, TLS and limits.
func startEtcd(s *server.Server, cfg server.Config, l net.Listener, advertise string) (*etcdapi.Server, error) {
	if l == nil {
		return nil, nil
	}
	e, err := etcdapi.New(etcdapi.Config{ID: cfg.ID, Node: s.Node(), Store: s.Store(), Lessor: s,
		Advertise: advertise, TLS: cfg.TLS, RequestTimeout: cfg.Limits.RequestTimeout, ReadBarrier: s.LinearizableBarrier,
		ElectionTimeout: cfg.ElectionTimeout, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	e.Serve(l)
	return e, nil
}
