package kafkaserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure [Start]. The zero value is one combined node with a
// 512 MB heap in a new temporary directory.
type Options struct {
	// Nodes is the number of combined broker+controller nodes (default 1).
	// With 3 or more, internal topics get replication 3 and min ISR 2, as
	// in production; with fewer, replication 1.
	Nodes int
	// Dir is where the cluster's directory (nodes' data and logs) is made
	// and left after Close; default the system's temporary directory, and
	// Close removes it.
	Dir string
	// Heap is the JVM's -Xmx (default "512m").
	Heap string
	// Props are extra server.properties entries for every node, e.g.
	// log.retention.check.interval.ms for a retention test. They override
	// the defaults.
	Props map[string]string
	// StartTimeout bounds each node's start until the cluster answers
	// metadata with every broker (default 2 minutes: several test binaries
	// start JVMs at once on a small machine).
	StartTimeout time.Duration
}

// Cluster is a running set of Kafka nodes. Methods are safe for concurrent
// use; Close is idempotent.
type Cluster struct {
	opts      Options
	dir       string
	ownDir    bool
	classpath string
	java      string
	clusterID string
	nodes     []*node

	mu     sync.Mutex
	closed bool
}

// node is one combined broker+controller process; its ports and directory
// stay the same across restarts, so clients and the quorum find it again.
type node struct {
	id         int32
	dir        string
	brokerPort int
	ctrlPort   int

	mu   sync.Mutex
	proc *process // nil while down
}

// process is one run of a node's JVM; done closes when it has been reaped.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start resolves the class path, formats and starts opts.Nodes nodes and
// waits until a metadata request lists every broker. A node that cannot
// bind its port (taken between choosing and binding it, e.g. by another
// test binary's broker) makes Start try again with new ports, up to three
// times.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var c *Cluster
		c, err = start(ctx, opts)
		if err == nil || !strings.Contains(err.Error(), "Address already in use") {
			return c, err
		}
	}
	return nil, err
}

func start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.Heap == "" {
		opts.Heap = "512m"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	java, err := Java()
	if err != nil {
		return nil, err
	}
	cp, err := Classpath(ctx)
	if err != nil {
		return nil, err
	}
	// A directory of its own each time, also under a caller's Dir: a
	// retry must not meet the nodes of the attempt before.
	c := &Cluster{opts: opts, classpath: cp, java: java, ownDir: opts.Dir == ""}
	if c.dir, err = os.MkdirTemp(opts.Dir, "kafkaserver-"); err != nil {
		return nil, fmt.Errorf("kafkaserver: %w", err)
	}
	if c.clusterID, err = newClusterID(); err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * opts.Nodes)
	if err != nil {
		return nil, err
	}
	for i := range opts.Nodes {
		n := &node{id: int32(i + 1), brokerPort: ports[2*i], ctrlPort: ports[2*i+1]}
		n.dir = filepath.Join(c.dir, "node"+strconv.Itoa(int(n.id)))
		c.nodes = append(c.nodes, n)
	}
	fail := func(err error) (*Cluster, error) {
		c.Close()
		return nil, err
	}
	for _, n := range c.nodes {
		if err := c.format(ctx, n); err != nil {
			return fail(err)
		}
	}
	for _, n := range c.nodes {
		if err := c.launch(n); err != nil {
			return fail(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := c.waitBrokers(wctx, c.ids()); err != nil {
		return fail(err)
	}
	return c, nil
}

// Bootstrap is the bootstrap.servers value for clients: every node.
func (c *Cluster) Bootstrap() string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr()
	}
	return strings.Join(addrs, ",")
}

// IDs are the node ids, 1..Nodes.
func (c *Cluster) IDs() []int32 { return c.ids() }

// Dir is the directory holding the nodes' data and logs.
func (c *Cluster) Dir() string { return c.dir }

func (c *Cluster) ids() []int32 {
	ids := make([]int32, len(c.nodes))
	for i, n := range c.nodes {
		ids[i] = n.id
	}
	return ids
}

func (n *node) addr() string { return "127.0.0.1:" + strconv.Itoa(n.brokerPort) }

func (c *Cluster) node(id int32) (*node, error) {
	if id < 1 || int(id) > len(c.nodes) {
		return nil, fmt.Errorf("kafkaserver: no node %d (nodes are 1..%d)", id, len(c.nodes))
	}
	return c.nodes[id-1], nil
}

// properties is a node's server.properties. The defaults keep a test
// cluster small and quick to fail over while behaving as Kafka does.
func (c *Cluster) properties(n *node) string {
	rf, isr := "1", "1"
	if len(c.nodes) >= 3 {
		rf, isr = "3", "2"
	}
	voters := make([]string, len(c.nodes))
	for i, v := range c.nodes {
		voters[i] = fmt.Sprintf("%d@127.0.0.1:%d", v.id, v.ctrlPort)
	}
	p := map[string]string{
		"process.roles":                                    "broker,controller",
		"node.id":                                          strconv.Itoa(int(n.id)),
		"controller.quorum.voters":                         strings.Join(voters, ","),
		"listeners":                                        fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", n.brokerPort, n.ctrlPort),
		"advertised.listeners":                             "PLAINTEXT://" + n.addr(),
		"controller.listener.names":                        "CONTROLLER",
		"listener.security.protocol.map":                   "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"inter.broker.listener.name":                       "PLAINTEXT",
		"log.dirs":                                         filepath.Join(n.dir, "data"),
		"auto.create.topics.enable":                        "false",
		"num.partitions":                                   "1",
		"default.replication.factor":                       rf,
		"offsets.topic.replication.factor":                 rf,
		"offsets.topic.num.partitions":                     "4",
		"transaction.state.log.replication.factor":         rf,
		"transaction.state.log.min.isr":                    isr,
		"transaction.state.log.num.partitions":             "4",
		"share.coordinator.state.topic.replication.factor": rf,
		"share.coordinator.state.topic.min.isr":            isr,
		"group.initial.rebalance.delay.ms":                 "0",
		// A test kills brokers on purpose: notice it in seconds, not 9+.
		"broker.session.timeout.ms":    "6000",
		"broker.heartbeat.interval.ms": "1000",
	}
	maps.Copy(p, c.opts.Props)
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(p)) {
		fmt.Fprintf(&b, "%s=%s\n", k, p[k])
	}
	return b.String()
}

// log4j2 writes the broker's log to broker.log in the node's directory,
// which LogTail shows for a failing test.
const log4j2 = `status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafkaserver.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = warn
`

func (c *Cluster) format(ctx context.Context, n *node) error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return fmt.Errorf("kafkaserver: %w", err)
	}
	props := filepath.Join(n.dir, "server.properties")
	if err := os.WriteFile(props, []byte(c.properties(n)), 0o644); err != nil {
		return fmt.Errorf("kafkaserver: %w", err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "log4j2.properties"), []byte(log4j2), 0o644); err != nil {
		return fmt.Errorf("kafkaserver: %w", err)
	}
	cmd := exec.CommandContext(ctx, c.java, append(c.jvmArgs(n, "64m"),
		"kafka.tools.StorageTool", "format", "-t", c.clusterID, "-c", props)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kafkaserver: format node %d: %v\n%s", n.id, err, tail(string(out), 20))
	}
	return nil
}

func (c *Cluster) jvmArgs(n *node, heap string) []string {
	return []string{
		"-Xmx" + heap, "-Xss1m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
		"-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + filepath.Join(n.dir, "log4j2.properties"),
		"-Dkafkaserver.log=" + filepath.Join(n.dir, "broker.log"),
		"-cp", c.classpath,
	}
}

// launch starts a node's JVM without waiting for it to serve.
func (c *Cluster) launch(n *node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		select {
		case <-n.proc.done: // its JVM exited by itself (e.g. during start-up): start it again
		default:
			return fmt.Errorf("kafkaserver: node %d is already running", n.id)
		}
	}
	out, err := os.OpenFile(filepath.Join(n.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("kafkaserver: %w", err)
	}
	cmd := exec.Command(c.java, append(c.jvmArgs(n, c.opts.Heap),
		"kafka.Kafka", filepath.Join(n.dir, "server.properties"))...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a signal to the test's terminal does not
	// reach it first, and killed with us if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("kafkaserver: start node %d: %w", n.id, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { // owned by the node: ends when the JVM exits, reaps it
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	n.proc = p
	return nil
}

// signal sends sig to a running node and waits until it has exited.
func (c *Cluster) signal(ctx context.Context, id int32, sig syscall.Signal) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	n.mu.Lock()
	p := n.proc
	n.proc = nil
	n.mu.Unlock()
	if p == nil {
		return fmt.Errorf("kafkaserver: node %d is not running", id)
	}
	_ = p.cmd.Process.Signal(sig) // it may have exited already: Wait tells
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("kafkaserver: node %d did not exit on %v: %w", id, sig, ctx.Err())
	}
}

// Kill sends SIGKILL to a node (a crash: nothing flushed, no controlled
// shutdown) and returns once the process is gone.
func (c *Cluster) Kill(id int32) error {
	return c.signal(context.Background(), id, syscall.SIGKILL)
}

// Stop sends SIGTERM (a controlled shutdown: leadership moves first) and
// waits for the process to exit, killing it if ctx ends first.
func (c *Cluster) Stop(ctx context.Context, id int32) error {
	return c.signal(ctx, id, syscall.SIGTERM)
}

// Restart starts a stopped or killed node again with its data and ports
// and waits until a metadata request lists it. A JVM that exits during
// start-up is launched once more: a CI run saw a node restarted beside
// another one exit with status 1 once in several runs, the cause gone
// from the log's tail; the error names both attempts' errors.
func (c *Cluster) Restart(ctx context.Context, id int32) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	var first error
	for attempt := 0; ; attempt++ {
		if err := c.launch(n); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
		err = c.waitBrokers(wctx, []int32{id})
		cancel()
		if err == nil || attempt == 1 || !errors.Is(err, errExited) {
			if first != nil && err != nil {
				return fmt.Errorf("%w\n(a first attempt: %v)", err, first)
			}
			return err
		}
		first = err
	}
}

// Running reports whether the node's process is up (started and not yet
// exited): a process that was reaped is not running, whatever kill -0 says.
func (c *Cluster) Running(id int32) bool {
	n, err := c.node(id)
	if err != nil {
		return false
	}
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// LogTail returns the last lines of a node's broker log and stdout, for a
// failing test's output.
func (c *Cluster) LogTail(id int32, lines int) string {
	n, err := c.node(id)
	if err != nil {
		return err.Error()
	}
	var b bytes.Buffer
	for _, f := range []string{"stdout.log", "broker.log"} {
		data, err := os.ReadFile(filepath.Join(n.dir, f))
		if err != nil || len(data) == 0 {
			continue
		}
		fmt.Fprintf(&b, "--- node %d %s (tail)\n%s\n", n.id, f, tail(string(data), lines))
	}
	return b.String()
}

// Close kills every node and removes the cluster's directory if Start
// made it. Nothing of a test broker is worth a clean shutdown.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	for _, n := range c.nodes {
		if c.Running(n.id) {
			_ = c.Kill(n.id)
		}
	}
	if c.ownDir {
		_ = os.RemoveAll(c.dir)
	}
}

// errExited marks a node whose JVM ended while we waited for it.
var errExited = errors.New("exited during start-up")

// errorLines returns the last ERROR and FATAL lines (with the line after
// each, usually the exception) of a node's broker log: the cause of an
// exit is often far above the shutdown lines that end the log.
func (c *Cluster) errorLines(id int32, max int) string {
	n, err := c.node(id)
	if err != nil {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(n.dir, "broker.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(data), "\n")
	var out []string
	for i, l := range lines {
		if strings.Contains(l, " ERROR ") || strings.Contains(l, " FATAL ") {
			out = append(out, l)
			if i+1 < len(lines) {
				out = append(out, lines[i+1])
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	if len(out) > 2*max {
		out = out[len(out)-2*max:]
	}
	return fmt.Sprintf("--- node %d broker.log ERROR/FATAL lines\n%s\n", id, strings.Join(out, "\n"))
}

// exited reports a node whose JVM ended while we waited for it, with its
// log, so a bad config fails at once instead of timing out.
func (c *Cluster) exited(ids []int32) error {
	for _, id := range ids {
		n, _ := c.node(id)
		n.mu.Lock()
		p := n.proc
		n.mu.Unlock()
		if p == nil {
			continue
		}
		select {
		case <-p.done:
			return fmt.Errorf("kafkaserver: node %d %w (%v):\n%s%s", id, errExited, p.err, c.errorLines(id, 20), c.LogTail(id, 30))
		default:
		}
	}
	return nil
}

// newClusterID makes a Kafka cluster id (a base64url UUID, as StorageTool
// random-uuid prints) without starting a JVM for it. Kafka reserves ids
// starting with '-' on the command line, so those are drawn again.
func newClusterID() (string, error) {
	for {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("kafkaserver: cluster id: %w", err)
		}
		id := base64.RawURLEncoding.EncodeToString(b[:])
		if id[0] != '-' {
			return id, nil
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago,
// drawn below the kernel's ephemeral range: a port from that range (what
// listening on :0 hands out) can be taken by any client's outgoing
// connection while a killed node is down, and the node then cannot come
// back on it.
func freePorts(n int) ([]int, error) {
	lo, hi := 10000, ephemeralLow()-1
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("kafkaserver: no free port in %d-%d", lo, hi)
		}
		port := lo + mrand.IntN(hi-lo+1)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	return ports, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux
// default 32768).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 11000 {
				return v
			}
		}
	}
	return 32768
}

var errNotReady = errors.New("not ready")
