package config

import (
	"hash/fnv"
	"strconv"
	"testing"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in, str string
		match   map[string]bool
	}{
		{"all", "all", map[string]bool{"1": true, "acme": true}},
		{"none", "none", map[string]bool{"1": false, "acme": false}},
		{"{percent: 100}", "all", map[string]bool{"1": true}},
		{"{percent: 0}", "none", map[string]bool{"1": false}},
		{"{accounts: [42, '7', acme, 0x10, 1_000]}", "{accounts: [42, 7, acme, 16, 1000]}",
			map[string]bool{"42": true, "7": true, "acme": true, "16": true, "1000": true, "43": false}},
		{"{percent: 100, exclude: [13, evil]}", "{percent: 100, exclude: [13, evil]}",
			map[string]bool{"13": false, "evil": false, "14": true}},
		{"{accounts: [5], exclude: [5]}", "{accounts: [5], exclude: [5]}", map[string]bool{"5": false}},
		{"{percent: 12.5, accounts: [1], exclude: [2]}", "{percent: 12.5, accounts: [1], exclude: [2]}", map[string]bool{"1": true, "2": false}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := ParseSelector(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if s.String() != tt.str {
				t.Errorf("String() = %q, want %q", s.String(), tt.str)
			}
			for k, want := range tt.match {
				if s.Match(k) != want {
					t.Errorf("Match(%q) = %v, want %v", k, !want, want)
				}
			}
		})
	}
	for _, bad := range []string{"some", "{percent: 101}", "{percent: x}", "{acounts: [1]}", "[1]", "{accounts: [[1]]}", "{percent: 1, percent: 2}"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) succeeded", bad)
		}
	}
}

// TestSelectorLiteral checks that a Selector written as a Go literal (no
// index maps) behaves like a parsed one.
func TestSelectorLiteral(t *testing.T) {
	s := Selector{Percent: 0, Accounts: []string{"a"}, Exclude: []string{"b"}}
	if !s.Match("a") || s.Match("b") || s.Match("c") {
		t.Error("literal selector mismatches")
	}
	if !All.Match("x") || None.Match("x") || !None.IsNone() || All.IsNone() {
		t.Error("All/None wrong")
	}
}

// TestBucketStable pins the hash: these values must never change, or a
// config that routed an account to Kafka yesterday would route it elsewhere
// today, and hosts on different versions would disagree.
func TestBucketStable(t *testing.T) {
	for key, want := range map[string]uint32{"": 6037, "1": 7868, "42": 8691, "acme": 5087, "bad3a155-585f-47cb-bc3e-51767d52c2a2": 9191} {
		if got := Bucket(key); got != want {
			t.Errorf("Bucket(%q) = %d, want %d", key, got, want)
		}
	}
	for i := 0; i < 1000; i++ {
		k := strconv.Itoa(i * 7919)
		h := fnv.New64a()
		h.Write([]byte(k))
		if got, want := Bucket(k), uint32(h.Sum64()%10000); got != want {
			t.Fatalf("Bucket(%q) = %d, hash/fnv gives %d", k, got, want)
		}
	}
}

// TestPercentOnlyGrows checks the cutover property: every account selected
// at N percent is still selected at any larger N, and the share selected is
// close to N for realistic keys (sequential integer ids).
func TestPercentOnlyGrows(t *testing.T) {
	const n = 100000
	percents := []float64{0, 0.01, 1, 5, 10, 25, 50, 75, 99.99, 100}
	prev := map[string]bool{}
	for _, p := range percents {
		s := Selector{Percent: p}
		cur := map[string]bool{}
		for i := 0; i < n; i++ {
			k := strconv.Itoa(i)
			if s.Match(k) {
				cur[k] = true
			}
		}
		for k := range prev {
			if !cur[k] {
				t.Fatalf("account %s selected at a lower percent but not at %v", k, p)
			}
		}
		share := 100 * float64(len(cur)) / n
		if d := share - p; d > 0.5 || d < -0.5 {
			t.Errorf("percent %v selects %.2f%% of %d sequential accounts", p, share, n)
		}
		prev = cur
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"4MiB": 4 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30, "2TiB": 2 << 40, "1048576": 1 << 20,
		"1MB": 1e6, "10KB": 1e4, "3GB": 3e9, "1TB": 1e12, "100B": 100, "2 MiB": 2 << 20, "1_000": 1000, "0": 0,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "4mb", "4 megs", "-1", "1.5MiB", "9999999999TiB", "4MiBs"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded", in)
		}
	}
	for b, want := range map[ByteSize]string{4 << 20: "4MiB", 512 << 10: "512KiB", 1000: "1000", 0: "0", 3 << 30: "3GiB"} {
		if b.String() != want {
			t.Errorf("%d.String() = %q, want %q", int64(b), b.String(), want)
		}
	}
}
