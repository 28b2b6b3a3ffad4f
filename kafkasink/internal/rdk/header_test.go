package rdk_test

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// confluentModule is the module whose bundled librdkafka the binding links.
const confluentModule = "github.com/confluentinc/confluent-kafka-go/v2"

// TestHeaderMatchesLibrdkafka checks rdk.h, our declarations of the
// librdkafka API the binding uses, against the rdkafka.h bundled in the
// confluent-kafka-go module go.mod names, so that upgrading
// confluent-kafka-go (and with it librdkafka) cannot silently change a
// struct layout, a constant or a prototype under the binding: every struct
// and field (size, offset, type), every enum value and macro, every
// prototype.
func TestHeaderMatchesLibrdkafka(t *testing.T) {
	cc := requireGCC(t)
	real := bundledHeader(t)
	if err := checkHeader(cc, t.TempDir(), "rdk.h", real); err != nil {
		t.Fatalf("rdk.h disagrees with %s:\n%v", real, err)
	}
}

// TestHeaderCheckCatchesMismatch proves the check above can fail: copies
// of rdk.h with one declaration wrong (a field moved, an enum value, a
// macro, a prototype, a struct's size) must each be refused, naming what
// is wrong.
func TestHeaderCheckCatchesMismatch(t *testing.T) {
	cc := requireGCC(t)
	real := bundledHeader(t)
	orig, err := os.ReadFile("rdk.h")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"field offset", "\tint32_t partition;\n\tvoid *payload;", "\tint64_t partition;\n\tvoid *payload;", "partition"},
		{"field order", "\tint broker_cnt;\n\tstruct rd_kafka_metadata_broker *brokers;\n\tint topic_cnt;",
			"\tint topic_cnt;\n\tstruct rd_kafka_metadata_broker *brokers;\n\tint broker_cnt;", "broker_cnt"},
		{"field type", "\tchar *topic;\n", "\tconst char *topic;\n", "topic"},
		{"enum value", "RD_KAFKA_VTYPE_HEADER = 9,", "RD_KAFKA_VTYPE_HEADER = 10,", "RD_KAFKA_VTYPE_HEADER"},
		{"macro value", "#define RD_KAFKA_MSG_F_COPY 0x2", "#define RD_KAFKA_MSG_F_COPY 0x1", "RD_KAFKA_MSG_F_COPY"},
		{"struct size", "\t\tchar _pad[64];", "\t\tchar _pad[48];", "rd_kafka_vu_t"},
		{"prototype", "int rd_kafka_error_is_fatal(const rd_kafka_error_t *error);", "int rd_kafka_error_is_fatal(rd_kafka_error_t *error);", "rd_kafka_error_is_fatal"},
		{"missing function", "void rd_kafka_queue_yield(rd_kafka_queue_t *rkqu);", "void rd_kafka_queue_yield(rd_kafka_queue_t *rkqu);\nvoid rd_kafka_no_such_function(rd_kafka_t *rk);", "rd_kafka_no_such_function"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(orig), c.old) {
				t.Fatalf("rdk.h no longer contains %q; update this case", c.old)
			}
			dir := t.TempDir()
			wrong := filepath.Join(dir, "rdk.h")
			if err := os.WriteFile(wrong, []byte(strings.Replace(string(orig), c.old, c.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			err := checkHeader(cc, dir, wrong, real)
			if err == nil {
				t.Fatalf("a header with a wrong %s passed the check", c.name)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("the check refused a wrong %s without naming %s:\n%v", c.name, c.want, err)
			}
		})
	}
}

// requireGCC returns the C compiler the check needs. Without one the test
// skips on a developer machine and fails in CI, where a skipped check
// would pass unnoticed.
func requireGCC(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the librdkafka declaration check needs gcc: %v", err)
		}
		t.Skipf("no gcc to check rdk.h against librdkafka's header (CI=true makes this a failure): %v", err)
	}
	return cc
}

// bundledHeader is the rdkafka.h inside the confluent-kafka-go module that
// go.mod selects. Not finding it always fails: the module is in the build.
func bundledHeader(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", confluentModule).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", confluentModule, err)
	}
	dir := strings.TrimSpace(string(out))
	h := filepath.Join(dir, "kafka", "librdkafka_vendor", "rdkafka.h")
	if _, err := os.Stat(h); err != nil {
		t.Fatalf("librdkafka's header is not where confluent-kafka-go kept it: %v", err)
	}
	return h
}

var (
	// One-line object-like macros, the only kind rdk.h defines.
	macroRE = regexp.MustCompile(`(?m)^#define\s+(RD_KAFKA_\w+)\s+(.+)$`)
	// A function in gcc's -aux-info listing: "/* file:line:NC */ extern T name (args);".
	auxRE = regexp.MustCompile(`^/\* (.*):\d+:\w+ \*/ extern .*?\b(\w+) \(`)
)

// checkHeader compiles ours (rdk.h or a copy) twice: once alone, with
// debug information for every type and gcc's list of its prototypes,
// from which it learns what ours declares; then a translation unit that
// includes librdkafka's real header and asserts, at compile time, that
// each of those declarations agrees with it. The error is gcc's output:
// one line per disagreement.
func checkHeader(cc, dir, ours, real string) error {
	ours, err := filepath.Abs(ours)
	if err != nil {
		return err
	}
	src := filepath.Join(dir, "ours.c")
	obj := filepath.Join(dir, "ours.o")
	aux := filepath.Join(dir, "ours.aux")
	if err := os.WriteFile(src, fmt.Appendf(nil, "#include %q\n", ours), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command(cc, "-c", "-g", "-fno-eliminate-unused-debug-types", "-aux-info", aux, "-o", obj, src).CombinedOutput(); err != nil {
		return fmt.Errorf("compiling our header alone: %v\n%s", err, out)
	}
	var asserts []string
	types, err := typeAsserts(obj)
	if err != nil {
		return err
	}
	asserts = append(asserts, types...)

	text, err := os.ReadFile(ours)
	if err != nil {
		return err
	}
	for _, m := range macroRE.FindAllStringSubmatch(string(text), -1) {
		asserts = append(asserts, fmt.Sprintf("_Static_assert((%s) == (%s), \"macro %s: rdk.h says %s\");",
			m[1], m[2], m[1], cquote(m[2])))
	}

	// Functions: each must be declared by librdkafka's header (checked
	// before ours is included, with implicit declarations an error), and
	// our prototype then redeclares it, which gcc refuses when the types
	// differ.
	auxText, err := os.ReadFile(aux)
	if err != nil {
		return err
	}
	var fns []string
	for _, line := range strings.Split(string(auxText), "\n") {
		if m := auxRE.FindStringSubmatch(line); m != nil && m[1] == ours {
			fns = append(fns, m[2])
		}
	}
	if len(fns) == 0 {
		return fmt.Errorf("found no prototypes of %s in gcc's -aux-info output", ours)
	}

	var c strings.Builder
	fmt.Fprintf(&c, "#include <stddef.h>\n#include %q\n\n", real)
	c.WriteString("static void *const rdk_functions[] = {\n")
	for _, f := range fns {
		fmt.Fprintf(&c, "\t(void *)%s,\n", f)
	}
	c.WriteString("};\n\n")
	fmt.Fprintf(&c, "#define RDK_CHECK_PROTOTYPES\n#include %q\n\n", ours)
	for _, a := range asserts {
		c.WriteString(a + "\n")
	}
	check := filepath.Join(dir, "check.c")
	if err := os.WriteFile(check, []byte(c.String()), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(cc, "-c", "-fmax-errors=0", "-Werror=implicit-function-declaration",
		"-o", filepath.Join(dir, "check.o"), check).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v (%d checks in %s):\n%s", err, len(asserts)+len(fns), check, out)
	}
	if len(asserts) < 50 {
		// A parsing slip that drops the checks must not pass as agreement.
		return fmt.Errorf("only %d checks generated from %s", len(asserts), ours)
	}
	return nil
}

// typeAsserts reads the debug information of an object compiled from our
// header and returns a static assertion for every fact of its rd_kafka
// types: each typedef's underlying type, each struct's and union's size,
// each member's offset, size and type, each enum value.
func typeAsserts(obj string) ([]string, error) {
	f, err := elf.Open(obj)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return nil, err
	}
	var asserts []string
	add := func(cond, format string, args ...any) {
		asserts = append(asserts, fmt.Sprintf("_Static_assert(%s, \"%s\");", cond, cquote(fmt.Sprintf(format, args...))))
	}
	enums := map[string]bool{}
	checkEnum := func(e *dwarf.EnumType) {
		for _, v := range e.Val {
			if !enums[v.Name] {
				enums[v.Name] = true
				add(fmt.Sprintf("%s == %d", v.Name, v.Val), "enum value %s: rdk.h says %d", v.Name, v.Val)
			}
		}
	}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		if e.Tag != dwarf.TagTypedef && e.Tag != dwarf.TagEnumerationType {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if !strings.HasPrefix(name, "rd_kafka_") {
			continue
		}
		typ, err := d.Type(e.Offset)
		if err != nil {
			return nil, err
		}
		if et, ok := typ.(*dwarf.EnumType); ok { // a named enum without typedef
			checkEnum(et)
			continue
		}
		td := typ.(*dwarf.TypedefType)
		if st, ok := td.Type.(*dwarf.StructType); !ok || !st.Incomplete {
			add(fmt.Sprintf("sizeof(%s) == %d", name, td.Type.Size()), "sizeof(%s): rdk.h says %d", name, td.Type.Size())
		}
		if spell := cType(td.Type); spell != "" {
			add(fmt.Sprintf("__builtin_types_compatible_p(%s, %s)", name, spell), "typedef %s: rdk.h says %s", name, spell)
		}
		switch u := td.Type.(type) {
		case *dwarf.EnumType:
			checkEnum(u)
		case *dwarf.StructType:
			if u.Incomplete {
				continue // an opaque handle: the typedef's tag is checked above
			}
			var members func(path string, st *dwarf.StructType, base int64)
			members = func(path string, st *dwarf.StructType, base int64) {
				for _, fld := range st.Field {
					p := path + fld.Name
					off := base + fld.ByteOffset
					add(fmt.Sprintf("offsetof(%s, %s) == %d", name, p, off), "offsetof(%s, %s): rdk.h says %d", name, p, off)
					add(fmt.Sprintf("sizeof(((%s *)0)->%s) == %d", name, p, fld.Type.Size()), "sizeof %s.%s: rdk.h says %d", name, p, fld.Type.Size())
					if spell := cType(fld.Type); spell != "" {
						add(fmt.Sprintf("__builtin_types_compatible_p(__typeof__(((%s *)0)->%s), %s)", name, p, spell),
							"type of %s.%s: rdk.h says %s", name, p, spell)
					} else if inner, ok := fld.Type.(*dwarf.StructType); ok {
						members(p+".", inner, off)
					} else {
						add("0", "%s.%s: the check cannot spell its type %s", name, p, fld.Type)
					}
				}
			}
			members("", u, 0)
		}
	}
	return asserts, nil
}

// cType spells a type from debug information the way C names it, or ""
// for an anonymous struct or union (its members are checked one by one).
func cType(t dwarf.Type) string {
	switch t := t.(type) {
	case *dwarf.TypedefType:
		return t.Name
	case *dwarf.StructType:
		if t.StructName == "" {
			return ""
		}
		return t.Kind + " " + t.StructName
	case *dwarf.EnumType:
		if t.EnumName == "" {
			return ""
		}
		return "enum " + t.EnumName
	case *dwarf.PtrType:
		if _, ok := t.Type.(*dwarf.VoidType); ok {
			return "void *"
		}
		inner := cType(t.Type)
		if inner == "" {
			return ""
		}
		return inner + " *"
	case *dwarf.QualType:
		inner := cType(t.Type)
		if inner == "" {
			return ""
		}
		return t.Qual + " " + inner
	case *dwarf.ArrayType:
		inner := cType(t.Type)
		if inner == "" || t.Count < 0 {
			return ""
		}
		return fmt.Sprintf("%s[%d]", inner, t.Count)
	case *dwarf.VoidType:
		return "void"
	case interface{ Basic() *dwarf.BasicType }:
		return t.Basic().Name
	}
	return ""
}

// cquote makes s safe inside a C string literal.
func cquote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}
