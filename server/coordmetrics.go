package server

import "github.com/prometheus/client_golang/prometheus"

// coordCollector reports the coordination store's state at scrape time.
type coordCollector struct{ s *Server }

var (
	descRevision = prometheus.NewDesc("raftkv_kv_revision", "The store revision this member has applied.", nil, nil)
	descCompact  = prometheus.NewDesc("raftkv_kv_compacted_revision", "The oldest revision reads and watches may ask for.", nil, nil)
	descWatchers = prometheus.NewDesc("raftkv_kv_watchers", "Live watchers of this member's store (following applies, past their catch-up).", nil, nil)
	descStreams  = prometheus.NewDesc("raftkv_watch_streams", "Watch streams this member serves; at MaxWatchStreams new ones are refused.", nil, nil)
	descLeases   = prometheus.NewDesc("raftkv_kv_leases", "Leases in the store.", nil, nil)
)

func (c *coordCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRevision, descCompact, descWatchers, descStreams, descLeases} {
		ch <- d
	}
}

func (c *coordCollector) Collect(ch chan<- prometheus.Metric) {
	rev, compacted := c.s.store.Revision()
	for d, v := range map[*prometheus.Desc]float64{
		descRevision: float64(rev), descCompact: float64(compacted), descWatchers: float64(c.s.store.Watchers()),
		descStreams: float64(c.s.watches.n.Load()), descLeases: float64(len(c.s.store.Leases())),
	} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
}
