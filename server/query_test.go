package server

import (
	neturl "net/url"
	"testing"
)

// TestQueryValue shows queryValue answers as neturl.ParseQuery(raw).Get(key)
// does, escapes, repeats, semicolons and bad escapes included.
func TestQueryValue(t *testing.T) {
	raws := []string{
		"", "consistency=lease", "a=1&consistency=stale&consistency=lease",
		"consistency", "consistency=", "consisten%63y=linearizable", "consistency=lin%65arizable",
		"consistency=a+b", "consistency=%zz&consistency=lease", "consistency=x;y&consistency=lease",
		"x=1;consistency=stale", "&&consistency=lease&", "consistency%3Dlease", "%zz=1&consistency=ok",
		"consistency=lease=x", "+consistency=lease", "consistency+=lease",
		"+=0", "%2B=1&+=2", "a%zz=1&a=2", "%61=1",
	}
	for _, raw := range raws {
		q, _ := neturl.ParseQuery(raw)
		for _, key := range []string{"consistency", "a", "x", "+", " ", "a%zz"} {
			if got, want := queryValue(raw, key), q.Get(key); got != want {
				t.Errorf("queryValue(%q, %q) = %q, ParseQuery says %q", raw, key, got, want)
			}
		}
	}
}

func FuzzQueryValue(f *testing.F) {
	f.Add("consistency=lease&a=%41", "consistency")
	f.Fuzz(func(t *testing.T, raw, key string) {
		q, _ := neturl.ParseQuery(raw)
		if got, want := queryValue(raw, key), q.Get(key); got != want {
			t.Fatalf("queryValue(%q, %q) = %q, ParseQuery says %q", raw, key, got, want)
		}
	})
}
