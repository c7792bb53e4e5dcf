package server

import (
	neturl "net/url"
	"strings"
)

// queryValue returns the first value of key in the raw query, as
// url.ParseQuery(raw).Get(key) would, without building the map: the read
// path asks for one parameter on every request. Like ParseQuery it skips a
// pair holding a semicolon or a bad escape.
func queryValue(raw, key string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		// A key with an escape names its unescaped self only: "+" is " ".
		if strings.ContainsAny(k, "%+") {
			uk, err := neturl.QueryUnescape(k)
			if err != nil || uk != key {
				continue
			}
		} else if k != key {
			continue
		}
		if !strings.ContainsAny(v, "%+") {
			return v
		}
		uv, err := neturl.QueryUnescape(v)
		if err != nil {
			continue
		}
		return uv
	}
	return ""
}
