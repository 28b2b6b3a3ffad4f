package kafkasink

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dualwrite/ingest/schema"
)

// Config configures a [Sink]. The zero value of every optional field means
// its default; [New] validates the whole struct and reports every bad field.
type Config struct {
	// Brokers is the bootstrap list, "host:port[,host:port...]" (required).
	// The config file's "embedded" must be resolved by the caller (start
	// internal/mockkafka and pass its Bootstrap()) before New.
	Brokers string
	// Properties are librdkafka properties applied over [DefaultProperties]:
	// SASL, TLS, tuning, anything librdkafka accepts. Properties that weaken
	// the no-loss defaults (acks, enable.idempotence, message.timeout.ms,
	// partitioner) are allowed but logged as warnings at New. The sink owns
	// bootstrap.servers (use Brokers), confluent-kafka-go's "go.*" properties,
	// delivery.report.only.error and transactional.id: setting them is a
	// config error.
	Properties map[string]string
	// Topics are the topics the sink will produce to (the Topic of every
	// table routed to Kafka). New fails unless all exist, see
	// [Sink.CheckTopics]. A topic first met in Submit (a table routed to
	// Kafka by a config reload) is checked the same way before anything
	// is produced to it.
	Topics []string
	// CreateTopics creates missing topics instead of failing. Development
	// only: production topics need deliberate partition counts, replication
	// and retention.
	CreateTopics bool
	// CreatePartitions is the partition count of topics created by
	// CreateTopics (0: the broker's num.partitions).
	CreatePartitions int
	// Name is the sink's name, which the loader uses for its checkpoints,
	// metrics and logs (default "kafka").
	Name string
	// ShutdownTimeout bounds [Sink.Close]: how long it lets messages
	// already handed to librdkafka be delivered before failing their
	// batches, and then how long it waits for librdkafka to shut down
	// (default 10s).
	ShutdownTimeout time.Duration
	// RetentionMargin: a record whose event time (the message timestamp)
	// the topic's retention.ms would let the broker delete within this
	// long of producing it is dead-lettered instead (reason "retention"),
	// as is one the topic refuses for its timestamp
	// (message.timestamp.before/after.max.ms, reason
	// "timestamp_refused"); see [TopicConfig.CheckTime] for the exact
	// bound. 0 means [DefaultRetentionMargin]. It applies only where the
	// topic's config could be read.
	RetentionMargin time.Duration
	// Logger receives the sink's and librdkafka's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultName is the sink name when Config.Name is empty.
const DefaultName = "kafka"

// DefaultShutdownTimeout is Config.ShutdownTimeout's default.
const DefaultShutdownTimeout = 10 * time.Second

// DefaultProperties returns the librdkafka properties the sink starts from,
// before Config.Properties are applied. Why each one:
//
//   - acks=all, enable.idempotence=true: a message counts as delivered
//     only once every in-sync replica has it, and librdkafka's internal
//     retries can neither duplicate nor reorder messages within a
//     partition (idempotence also keeps max.in.flight at most 5 and
//     retries unlimited).
//   - message.timeout.ms=0: never expire a queued message. The default,
//     300000, fails messages that could not be sent for five minutes;
//     shippers that treat "handed to librdkafka" as delivered lose them.
//     With 0, a broker outage of any length only delays delivery, and the
//     loader's checkpoint waits. (If you set a timeout anyway, a timed-out
//     message fails its batch and the loader re-sends it from its
//     checkpoint: nothing is lost, but order across the retry is not kept.)
//   - partitioner=murmur2_random: the partition the Java client's default
//     partitioner picks for the same key, so Java and Go producers agree;
//     librdkafka's default, consistent_random (CRC32), does not.
//   - compression.type=lz4: ~2.5 KB JSON rows compress several-fold and
//     lz4 costs the least CPU per byte of the codecs Kafka supports.
//   - linger.ms=10, batch.num.messages=10000, batch.size=1000000: the
//     loader already hands over batches of thousands of records, so a
//     short linger fills large broker requests without adding visible
//     latency; batch.size stays under the brokers' default
//     message.max.bytes (1048588). A broker checks a topic's
//     max.message.bytes against a whole record batch, not a record, so
//     the sink lowers batch.size below the smallest limit of the topics
//     it produces to (see [Sink.CheckTopics]).
//   - queue.buffering.max.kbytes=262144: librdkafka's default lets 1 GiB
//     queue up during an outage; 256 MiB (and the default 100000
//     messages) bounds memory, and Submit waits for room instead.
func DefaultProperties() map[string]string {
	return map[string]string{
		"acks":                         "all",
		"enable.idempotence":           "true",
		"message.timeout.ms":           "0",
		"partitioner":                  "murmur2_random",
		"compression.type":             "lz4",
		"linger.ms":                    "10",
		"batch.num.messages":           "10000",
		"batch.size":                   "1000000",
		"queue.buffering.max.kbytes":   "262144",
		"queue.buffering.max.messages": "100000",
	}
}

// aliases maps librdkafka property names to their other names, for the
// properties DefaultProperties sets.
var aliases = map[string]string{
	"acks":                   "request.required.acks",
	"request.required.acks":  "acks",
	"message.timeout.ms":     "delivery.timeout.ms",
	"delivery.timeout.ms":    "message.timeout.ms",
	"linger.ms":              "queue.buffering.max.ms",
	"queue.buffering.max.ms": "linger.ms",
	"compression.type":       "compression.codec",
	"compression.codec":      "compression.type",
}

// defaultMessageMaxBytes is librdkafka's message.max.bytes default, used in
// dead-letter details when the property is not set.
const defaultMessageMaxBytes = 1000000

// defaultBatchSize is librdkafka's batch.size default, for a configuration
// that removed DefaultProperties' value (it never does today).
const defaultBatchSize = 1000000

// ConfigError is one invalid field of a [Config]. [New] returns all of them
// joined with errors.Join; the CLI branches on it (errors.As) to exit with
// the usage/config status.
type ConfigError struct {
	Field string // e.g. "Brokers", "Properties[bootstrap.servers]"
	Msg   string
}

func (e *ConfigError) Error() string { return "kafkasink: config: " + e.Field + ": " + e.Msg }

// validated is a Config with defaults filled in and the librdkafka
// configuration built.
type validated struct {
	Config
	conf            map[string]string
	messageMaxBytes int
	batchSize       int // batch.size before the topics' limits lower it
	warnings        []string
}

func (c Config) validate() (*validated, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	v := &validated{Config: c}
	if v.Name == "" {
		v.Name = DefaultName
	}
	if v.ShutdownTimeout == 0 {
		v.ShutdownTimeout = DefaultShutdownTimeout
	}
	if v.Logger == nil {
		v.Logger = slog.New(slog.DiscardHandler)
	}
	if v.RetentionMargin == 0 {
		v.RetentionMargin = DefaultRetentionMargin
	}

	switch b := strings.TrimSpace(c.Brokers); {
	case b == "":
		bad("Brokers", "is required")
	case b == "embedded":
		bad("Brokers", `"embedded" must be resolved by the caller: start internal/mockkafka and pass its Bootstrap()`)
	default:
		for _, hp := range strings.Split(b, ",") {
			if _, port, err := net.SplitHostPort(strings.TrimSpace(hp)); err != nil || port == "" {
				bad("Brokers", "must be a comma-separated host:port list, got %q", c.Brokers)
				break
			}
		}
	}
	if c.ShutdownTimeout < 0 {
		bad("ShutdownTimeout", "must not be negative, got %s", c.ShutdownTimeout)
	}
	if c.RetentionMargin < 0 {
		bad("RetentionMargin", "must not be negative, got %s", c.RetentionMargin)
	}
	if c.CreatePartitions < 0 {
		bad("CreatePartitions", "must not be negative, got %d", c.CreatePartitions)
	}
	for i, t := range c.Topics {
		if err := schema.CheckTopic(t); err != nil {
			bad(fmt.Sprintf("Topics[%d]", i), "%v", err)
		}
	}

	props := DefaultProperties()
	for k, val := range c.Properties {
		field := "Properties[" + k + "]"
		switch {
		case k == "bootstrap.servers" || k == "metadata.broker.list":
			bad(field, "set Brokers instead")
		case strings.HasPrefix(k, "go."):
			bad(field, "is a confluent-kafka-go property; the sink sets its own (delivery reports, channels, logs)")
		case k == "delivery.report.only.error":
			bad(field, "the sink needs a delivery report for every message")
		case (k == "sasl.mechanism" || k == "sasl.mechanisms") && CheckOAuthBearer(c.Properties) != nil:
			bad(field, "%v", CheckOAuthBearer(c.Properties))
		case k == "transactional.id":
			bad(field, "transactions are not supported: the sink is idempotent, not transactional")
		default:
			// librdkafka has aliases for some of our defaults; both names
			// in one configuration would be applied in map order.
			if alias, ok := aliases[k]; ok {
				delete(props, alias)
			}
			props[k] = val
		}
	}
	// The sizes the sink reasons with itself (dead-letter details, the
	// batch.size bound): librdkafka's default when unset.
	positive := func(name string, def int) int {
		s, ok := props[name]
		if !ok {
			return def
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			bad("Properties["+name+"]", "must be a positive integer, got %q", s)
			return def
		}
		return n
	}
	v.messageMaxBytes = positive("message.max.bytes", defaultMessageMaxBytes)
	v.batchSize = positive("batch.size", defaultBatchSize)
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, errors.Join(errs...)
	}
	v.warnings = weakened(props)

	v.conf = maps.Clone(props)
	v.conf["bootstrap.servers"] = strings.TrimSpace(c.Brokers)
	if _, ok := props["client.id"]; !ok {
		v.conf["client.id"] = "ingest-" + v.Name
	}
	return v, nil
}

// weakened lists the properties that give up part of the no-loss,
// per-key-order guarantees, for a warning at start-up.
func weakened(p map[string]string) []string {
	var w []string
	get := func(k string) string {
		if v, ok := p[k]; ok {
			return v
		}
		return p[aliases[k]]
	}
	if a := get("acks"); a != "all" && a != "-1" {
		w = append(w, "acks="+a+": a message counts as delivered before every in-sync replica has it")
	}
	if b, err := strconv.ParseBool(p["enable.idempotence"]); err != nil || !b {
		w = append(w, "enable.idempotence="+p["enable.idempotence"]+": retries may duplicate or reorder messages within a partition")
	}
	if t := get("message.timeout.ms"); t != "0" {
		w = append(w, "message.timeout.ms="+t+": messages undelivered for that long fail their batch, which the loader re-sends (duplicates and reordering around the retry)")
	}
	if pt := p["partitioner"]; pt != "murmur2_random" && pt != "murmur2" {
		w = append(w, "partitioner="+pt+": keys no longer land on the partition a Java producer picks")
	}
	slices.Sort(w)
	return w
}

// CheckOAuthBearer refuses librdkafka properties that pick the OAUTHBEARER
// SASL mechanism without OIDC (or librdkafka's unsecured test tokens):
// confluent-kafka-go hands token refreshes to the application, and ingest
// has no token source of its own, so every connection would wait for a
// token that never comes. Anything that builds a confluent-kafka-go client
// from the same kafka.properties calls it.
func CheckOAuthBearer(props map[string]string) error {
	mech := props["sasl.mechanism"]
	if mech == "" {
		mech = props["sasl.mechanisms"]
	}
	if !strings.EqualFold(mech, "OAUTHBEARER") ||
		strings.EqualFold(props["sasl.oauthbearer.method"], "oidc") || props["enable.sasl.oauthbearer.unsecure.jwt"] == "true" {
		return nil
	}
	return fmt.Errorf("OAUTHBEARER needs sasl.oauthbearer.method: oidc (with sasl.oauthbearer.client.id, client.secret and token.endpoint.url): ingest cannot supply tokens itself")
}
