package kafkaserver

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// pom lists the broker's jars; see the comment inside it.
//
//go:embed pom.xml
var pom []byte

// ErrNotInstalled means Java or Maven is missing, so no broker can start.
// Tests branch on it (skip locally, fail in CI); the message says how to
// install them.
var ErrNotInstalled = errors.New("kafkaserver: Java 17+ (java) and Maven (mvn) are needed to run the test Kafka broker; " +
	"install them with `apt-get install -y openjdk-17-jre-headless maven` (Debian/Ubuntu, as root) or run scripts/install-deps")

// JarsEnv names an environment variable that, when set, is the directory of
// jars to use instead of resolving the pom (e.g. an unpacked Kafka
// distribution's libs/).
const JarsEnv = "INGEST_KAFKA_JARS"

// Java returns the java executable: $JAVA_HOME/bin/java when JAVA_HOME is
// set, else java on PATH.
func Java() (string, error) {
	if home := os.Getenv("JAVA_HOME"); home != "" {
		p := filepath.Join(home, "bin", "java")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("java not found: %w", ErrNotInstalled)
	}
	return p, nil
}

// CacheDir is where the resolved jars of the embedded pom live.
func CacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256(pom)
	return filepath.Join(base, "ingest", "kafkaserver", hex.EncodeToString(sum[:6])), nil
}

// Classpath returns a JVM class path holding the broker and its tools,
// resolving the embedded pom with Maven the first time (about 20 s with a
// cold ~/.m2, output in the error if it fails). Later calls, from any
// process, find the cached directory.
func Classpath(ctx context.Context) (string, error) {
	if dir := os.Getenv(JarsEnv); dir != "" {
		if !hasJars(dir) {
			return "", fmt.Errorf("kafkaserver: %s=%s holds no kafka_2.13 jar", JarsEnv, dir)
		}
		return filepath.Join(dir, "*"), nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	jars := filepath.Join(cache, "jars")
	if hasJars(jars) {
		return filepath.Join(jars, "*"), nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("kafkaserver: jar cache: %w", err)
	}
	// Test binaries of several packages start at once; one resolves, the
	// others wait for it and then find the jars.
	lock, err := os.OpenFile(filepath.Join(cache, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("kafkaserver: jar cache lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("kafkaserver: jar cache lock: %w", err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN) //nolint:errcheck // closing unlocks too
	if hasJars(jars) {
		return filepath.Join(jars, "*"), nil
	}
	if err := resolve(ctx, cache, jars); err != nil {
		return "", err
	}
	return filepath.Join(jars, "*"), nil
}

// resolve runs Maven on the pom into a temporary directory and renames it
// into place, so a half-copied directory is never taken for a cache hit.
func resolve(ctx context.Context, cache, jars string) error {
	if _, err := Java(); err != nil {
		return err
	}
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		return fmt.Errorf("mvn not found: %w", ErrNotInstalled)
	}
	work, err := os.MkdirTemp(cache, "resolve-")
	if err != nil {
		return fmt.Errorf("kafkaserver: %w", err)
	}
	defer os.RemoveAll(work)
	pomPath := filepath.Join(work, "pom.xml")
	if err := os.WriteFile(pomPath, pom, 0o644); err != nil {
		return fmt.Errorf("kafkaserver: %w", err)
	}
	out := filepath.Join(work, "jars")
	cmd := exec.CommandContext(ctx, mvn, "-B", "-q", "-f", pomPath,
		"dependency:copy-dependencies", "-DoutputDirectory="+out, "-DincludeScope=runtime")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kafkaserver: resolving the broker's jars with Maven failed (%v); output:\n%s", err, tail(string(b), 40))
	}
	if !hasJars(out) {
		return fmt.Errorf("kafkaserver: Maven ran but %s holds no kafka_2.13 jar", out)
	}
	if err := os.Rename(out, jars); err != nil {
		return fmt.Errorf("kafkaserver: %w", err)
	}
	return nil
}

func hasJars(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "kafka_2.13-*.jar"))
	return len(m) > 0
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
