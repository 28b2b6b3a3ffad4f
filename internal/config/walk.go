package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The walker makes parsing strict with useful messages. yaml.v3's own
// KnownFields mode names the Go type ("field dri not found in type
// config.Spool"); walking the node tree against the struct tags instead
// gives the user's path ("spool.dri") and line, checks every leaf's type
// the same way, and records the line of every key so that validation errors
// found after decoding can point at the line too.

type walker struct {
	errs  []*Error
	lines map[string]int      // path -> line of its key
	set   map[string]struct{} // paths whose value is not empty
}

// nodeParser is implemented by types that parse their own node and report
// errors with sub-paths (Selector, ByteSize).
type nodeParser interface {
	parseNode(n *yaml.Node, path string) []*Error
}

var nodeParserType = reflect.TypeFor[nodeParser]()

func (w *walker) bad(path string, n *yaml.Node, format string, args ...any) {
	w.errs = append(w.errs, &Error{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	n = resolveAlias(n)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	if reflect.PointerTo(t).Implements(nodeParserType) {
		v := reflect.New(t).Interface().(nodeParser)
		w.errs = append(w.errs, v.parseNode(n, path)...)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeFor[time.Time]() {
			break
		}
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		w.mapping(path, n, func(k *yaml.Node) (*yaml.Node, reflect.Type) {
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				w.bad(join(path, k.Value), k, "YAML merge keys (<<) are not supported")
				return nil, nil
			}
			ft, ok := fields[k.Value]
			if !ok {
				w.bad(join(path, k.Value), k, "unknown key%s", suggest(k.Value, keys(fields)))
				return nil, nil
			}
			return k, ft
		})
		return
	case reflect.Map:
		w.mapping(path, n, func(k *yaml.Node) (*yaml.Node, reflect.Type) {
			if k = resolveAlias(k); k.Kind != yaml.ScalarNode {
				w.bad(path, k, "keys must be scalars")
				return nil, nil
			}
			return k, t.Elem()
		})
		return
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.bad(path, n, "must be a list")
			return
		}
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			w.lines[p] = e.Line
			w.walk(e, t.Elem(), p)
		}
		return
	}
	// A leaf: let yaml decode it alone, so a type error names this key.
	if n.Kind != yaml.ScalarNode {
		w.bad(path, n, "must be %s", describe(t))
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		w.bad(path, n, "must be %s, got %q", describe(t), n.Value)
	}
}

// mapping walks the key-value pairs of the mapping n at path (a struct's
// fields or a map's entries). key vets a key node and returns the node
// whose value names the entry, with the type of the entry's value, or nil
// when it reported the key as bad. A key given twice is reported with the
// line of its first use.
func (w *walker) mapping(path string, n *yaml.Node, key func(k *yaml.Node) (*yaml.Node, reflect.Type)) {
	if n.Kind != yaml.MappingNode {
		w.bad(path, n, "must be a mapping")
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, et := key(n.Content[i])
		if k == nil {
			continue
		}
		v, p := n.Content[i+1], join(path, k.Value)
		if line, dup := seen[k.Value]; dup {
			w.bad(p, k, "duplicate key (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		w.record(p, k, v)
		w.walk(v, et, p)
	}
}

// collectFields maps yaml keys to field types, descending into inline
// embedded structs (config.Table embeds schema.Table).
func collectFields(t reflect.Type, out map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			collectFields(f.Type, out)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
}

func describe(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return `a duration such as "20ms" or "10s"`
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "an integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	}
	return "a " + t.String()
}

// record notes the line of a key and whether its value is set. An empty
// value ("db:" with nothing after it) counts as not set, so it means the
// same as a missing key: the default.
func (w *walker) record(path string, k, v *yaml.Node) {
	w.lines[path] = k.Line
	if v = resolveAlias(v); v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return
	}
	w.set[path] = struct{}{}
}

func (w *walker) lineOf(path string) int {
	// Validation paths can be deeper than any key (e.g. a FieldError on
	// "columns" when the problem is one column), so fall back to parents.
	for path != "" {
		if l, ok := w.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func keys(m map[string]reflect.Type) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// suggest returns ` (did you mean "x"?)` for the closest valid key within
// two edits, which catches most typos, or "".
func suggest(got string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		if d := editDistance(got, v); d < bestD || d == bestD && v < best {
			best, bestD = v, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
