package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Selector chooses the accounts whose records a sink receives: the cutover
// toggle of one table and sink (docs/config.md, "Routing"). Its YAML forms
// are
//
//	all | none | {percent: N} | {accounts: [..]} | {percent: N, accounts: [..], exclude: [..]}
//
// An account matches when it is not excluded and is listed or falls in the
// percent. "all" is {percent: 100} and "none" is {percent: 0}. Account keys
// may be written as YAML integers or strings; they are kept as strings in
// the form schema.Record.Key has (integers in decimal), because that is what
// they are compared with.
//
// Build a Selector with [ParseSelector] or by decoding YAML; a literal works
// too but matches lists by linear search.
type Selector struct {
	// Percent is the share of accounts selected by hash, 0 to 100 in steps
	// of 0.01.
	Percent  float64
	Accounts []string
	Exclude  []string

	accounts, exclude map[string]struct{}
}

// buckets is the hash resolution: percent is compared in hundredths, so
// 0.01% steps are possible and 100 covers every bucket.
const buckets = 10000

// All selects every account; None selects no account.
var (
	All  = Selector{Percent: 100}
	None = Selector{}
)

// Bucket returns the account's hash bucket in [0, 10000): FNV-1a 64 of the
// key's bytes, modulo 10000. An account is in {percent: N} when its bucket
// is below N*100, so raising N only ever adds accounts, and every host and
// every version computes the same answer. This function is part of the
// cutover contract: changing it would move accounts between sinks.
func Bucket(accountKey string) uint32 {
	// FNV-1a 64 written out (identical to hash/fnv, see the tests) because
	// Match runs per record and hash/fnv would allocate.
	h := uint64(14695981039346656037)
	for i := 0; i < len(accountKey); i++ {
		h ^= uint64(accountKey[i])
		h *= 1099511628211
	}
	return uint32(h % buckets)
}

// Match reports whether the selector selects the account.
func (s *Selector) Match(accountKey string) bool {
	if s.listed(s.exclude, s.Exclude, accountKey) {
		return false
	}
	if s.listed(s.accounts, s.Accounts, accountKey) {
		return true
	}
	return float64(Bucket(accountKey)) < math.Round(s.Percent*100)
}

func (s *Selector) listed(set map[string]struct{}, list []string, key string) bool {
	if set != nil {
		_, ok := set[key]
		return ok
	}
	return slices.Contains(list, key)
}

// IsNone reports whether the selector can select no account at all, so a
// sink whose selectors are all none can be skipped.
func (s *Selector) IsNone() bool { return s.Percent == 0 && len(s.Accounts) == 0 }

// String renders the selector in its YAML flow form, for logs and the route
// configuration metric.
func (s Selector) String() string {
	if len(s.Accounts) == 0 && len(s.Exclude) == 0 {
		switch s.Percent {
		case 0:
			return "none"
		case 100:
			return "all"
		}
	}
	var parts []string
	if s.Percent != 0 || len(s.Accounts) == 0 {
		parts = append(parts, "percent: "+strconv.FormatFloat(s.Percent, 'f', -1, 64))
	}
	if len(s.Accounts) > 0 {
		parts = append(parts, "accounts: ["+strings.Join(s.Accounts, ", ")+"]")
	}
	if len(s.Exclude) > 0 {
		parts = append(parts, "exclude: ["+strings.Join(s.Exclude, ", ")+"]")
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// ParseSelector parses the YAML form of a selector, e.g. "all" or
// "{percent: 5, accounts: [42]}". The CLI uses it for flags.
func ParseSelector(s string) (Selector, error) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		return Selector{}, fmt.Errorf("selector %q: %w", s, err)
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		var sel Selector
		if errs := sel.parseNode(n.Content[0], "selector"); len(errs) > 0 {
			return Selector{}, errs[0]
		}
		return sel, nil
	}
	return Selector{}, fmt.Errorf("selector %q: want all, none or a mapping", s)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Selector) UnmarshalYAML(n *yaml.Node) error {
	if errs := s.parseNode(n, ""); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// parseNode parses a selector node, reporting every problem with its path
// (path.percent, path.accounts[2], ...) and line.
func (s *Selector) parseNode(n *yaml.Node, path string) []*Error {
	*s = Selector{}
	var errs []*Error
	bad := func(p string, n *yaml.Node, format string, args ...any) {
		errs = append(errs, &Error{Path: p, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
	}
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case "all":
			*s = All
		case "none":
			*s = None
		default:
			bad(path, n, "must be all, none or a mapping with percent, accounts, exclude; got %q", n.Value)
		}
		return errs
	case yaml.MappingNode:
	default:
		bad(path, n, "must be all, none or a mapping with percent, accounts, exclude")
		return errs
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		p := join(path, k.Value)
		if seen[k.Value] {
			bad(p, k, "duplicate key")
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "percent":
			f, err := strconv.ParseFloat(v.Value, 64)
			if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") || err != nil {
				bad(p, v, "must be a number between 0 and 100, got %q", v.Value)
				continue
			}
			if !(f >= 0 && f <= 100) {
				bad(p, v, "must be between 0 and 100, got %s", v.Value)
				continue
			}
			if b := f * 100; math.Abs(b-math.Round(b)) > 1e-6 {
				bad(p, v, "has more than two decimals (the resolution is 0.01%%), got %s", v.Value)
				continue
			}
			s.Percent = f
		case "accounts", "exclude":
			list, lerrs := parseAccounts(v, p)
			errs = append(errs, lerrs...)
			if k.Value == "accounts" {
				s.Accounts = list
			} else {
				s.Exclude = list
			}
		default:
			bad(p, k, "unknown key%s (want percent, accounts or exclude)", suggest(k.Value, []string{"percent", "accounts", "exclude"}))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	s.index()
	return nil
}

func (s *Selector) index() {
	s.accounts = make(map[string]struct{}, len(s.Accounts))
	for _, a := range s.Accounts {
		s.accounts[a] = struct{}{}
	}
	s.exclude = make(map[string]struct{}, len(s.Exclude))
	for _, a := range s.Exclude {
		s.exclude[a] = struct{}{}
	}
}

// parseAccounts reads a list of account keys. YAML integers are normalised
// to decimal (0x1F, 1_000 and 007 become "31", "1000", "7"), because
// schema.Record.Key holds integer keys in decimal; strings are kept as is.
func parseAccounts(n *yaml.Node, path string) ([]string, []*Error) {
	if n.Kind != yaml.SequenceNode {
		return nil, []*Error{{Path: path, Line: n.Line, Msg: "must be a list of account keys"}}
	}
	var (
		out  []string
		errs []*Error
	)
	for i, e := range n.Content {
		e = resolveAlias(e)
		p := fmt.Sprintf("%s[%d]", path, i)
		if e.Kind != yaml.ScalarNode {
			errs = append(errs, &Error{Path: p, Line: e.Line, Msg: "must be an integer or a string"})
			continue
		}
		tag := e.Tag
		if tag == "!!float" && strings.Trim(strings.TrimPrefix(e.Value, "-"), "0123456789") == "" {
			tag = "!!int" // yaml resolves integers beyond 64 bits as floats
		}
		switch tag {
		case "!!int":
			var v int64
			if err := e.Decode(&v); err != nil {
				errs = append(errs, &Error{Path: p, Line: e.Line, Msg: fmt.Sprintf("integer %s does not fit in 64 bits; quote it to use it as a string", e.Value)})
				continue
			}
			out = append(out, strconv.FormatInt(v, 10))
		case "!!str":
			if e.Value == "" {
				errs = append(errs, &Error{Path: p, Line: e.Line, Msg: "account key must not be empty"})
				continue
			}
			out = append(out, e.Value)
		default:
			errs = append(errs, &Error{Path: p, Line: e.Line, Msg: fmt.Sprintf("must be an integer or a string, got %s %q", strings.TrimPrefix(e.Tag, "!!"), e.Value)})
		}
	}
	return out, errs
}
