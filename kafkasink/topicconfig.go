package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TopicConfig is what a topic's configuration says about the messages it
// takes and keeps, as a broker describes it (DescribeConfigs): the value a
// broker reports is the one it enforces, the topic's own setting or else
// the broker's default. The sink and `ingest backfill` both read it with
// [ReadTopicConfigs].
type TopicConfig struct {
	Topic string
	// MaxMessageBytes is max.message.bytes, which a broker checks against
	// whole record batches (0 when not reported).
	MaxMessageBytes int
	// AppendTime: message.timestamp.type is LogAppendTime, so the broker
	// stamps messages itself and their event time does not matter.
	AppendTime bool
	// Retention is retention.ms: a broker deletes a message once its
	// timestamp (the row's event time) is that old, at one of its next
	// retention checks. 0: kept for ever (-1).
	Retention time.Duration
	// TimestampBefore and TimestampAfter are
	// message.timestamp.before.max.ms and message.timestamp.after.max.ms:
	// a broker refuses a message whose timestamp lies further in the past
	// or future than that. 0: no bound (Kafka's default, Long.MAX).
	TimestampBefore, TimestampAfter time.Duration
}

// The topic settings a TimeLimit can name.
const (
	SettingRetention       = "retention.ms"
	SettingTimestampBefore = "message.timestamp.before.max.ms"
	SettingTimestampAfter  = "message.timestamp.after.max.ms"
)

// DefaultRetentionMargin is [Config.RetentionMargin]'s default: the sink
// does not produce a record the topic's retention would delete within the
// hour. A live run's consumers read within seconds; the hour covers a
// consumer paused briefly and a broker's retention check (every
// log.retention.check.interval.ms, 5 minutes by default) that may run just
// after the record arrives. It is at most half the retention (see
// [TopicConfig.CheckTime]).
const DefaultRetentionMargin = time.Hour

// afterSlack is how far inside message.timestamp.after.max.ms a record's
// time must be: the check runs a moment before the broker's, on another
// machine's clock.
const afterSlack = time.Minute

// TimeLimit says why a topic would delete a message soon after it arrives,
// or refuse it, because of its timestamp.
type TimeLimit struct {
	Setting string        // SettingRetention, SettingTimestampBefore or SettingTimestampAfter
	Limit   time.Duration // the setting's value
	Margin  time.Duration // how far inside the limit a record must be
	// Oldest is the earliest timestamp the topic takes safely now (zero
	// when the record is too new); Newest the latest it accepts (zero
	// when the record is too old).
	Oldest, Newest time.Time
}

// CheckTime returns nil when a message with timestamp t, produced at now,
// is neither deleted by the topic's retention within margin nor refused
// for its timestamp; otherwise the limit it breaks. The margin counts at
// most half the retention (and half message.timestamp.before.max.ms), so a
// short retention still takes recent records: with retention.ms of one
// hour and the default margin, records up to 30 minutes old are taken.
// A record later than message.timestamp.after.max.ms less a minute is
// refused. A zero t (no event time: librdkafka stamps the produce time)
// and LogAppendTime topics pass.
//
// The bounds are exact: a record exactly at Oldest or Newest passes.
func (c *TopicConfig) CheckTime(t, now time.Time, margin time.Duration) *TimeLimit {
	if c == nil || c.AppendTime || t.IsZero() {
		return nil
	}
	if c.Retention > 0 {
		m := min(margin, c.Retention/2)
		if oldest := now.Add(-c.Retention + m); t.Before(oldest) {
			return &TimeLimit{Setting: SettingRetention, Limit: c.Retention, Margin: m, Oldest: oldest}
		}
	}
	if c.TimestampBefore > 0 {
		m := min(margin, c.TimestampBefore/2)
		if oldest := now.Add(-c.TimestampBefore + m); t.Before(oldest) {
			return &TimeLimit{Setting: SettingTimestampBefore, Limit: c.TimestampBefore, Margin: m, Oldest: oldest}
		}
	}
	if c.TimestampAfter > 0 {
		if newest := now.Add(c.TimestampAfter - afterSlack); t.After(newest) {
			return &TimeLimit{Setting: SettingTimestampAfter, Limit: c.TimestampAfter, Margin: afterSlack, Newest: newest}
		}
	}
	return nil
}

// ReadTopicConfigs describes topics on brokers (a bootstrap list), with the
// connection, security and client-identity entries of properties
// (librdkafka properties, as in [Config.Properties]; producer tuning is
// left out). A topic that does not exist is absent from the result and no
// error: the topic check names it with the command to create it. Any other
// failure is an error naming the topic; the configs read are returned
// with it. ctx bounds the request, and so does a default of a few seconds:
// librdkafka's mock cluster never answers it.
func ReadTopicConfigs(ctx context.Context, brokers string, properties map[string]string, topics []string) (map[string]TopicConfig, error) {
	if len(topics) == 0 {
		return nil, nil
	}
	conf := kafka.ConfigMap{"bootstrap.servers": strings.TrimSpace(brokers)}
	for k, v := range properties {
		if connectionProperty(k) {
			conf[k] = v
		}
	}
	ac, err := kafka.NewAdminClient(&conf)
	if err != nil {
		return nil, fmt.Errorf("kafka admin client: %w", err)
	}
	defer ac.Close()
	res := make([]kafka.ConfigResource, len(topics))
	for i, t := range topics {
		res[i] = kafka.ConfigResource{Type: kafka.ResourceTopic, Name: t}
	}
	dctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	results, err := ac.DescribeConfigs(dctx, res)
	if err != nil {
		return nil, fmt.Errorf("describe the configs of topics %s: %w", strings.Join(topics, ", "), err)
	}
	out := make(map[string]TopicConfig, len(results))
	var errs []error
	for _, r := range results {
		switch r.Error.Code() {
		case kafka.ErrNoError:
		case kafka.ErrUnknownTopicOrPart:
			continue
		default:
			errs = append(errs, fmt.Errorf("topic %s: %w", r.Name, r.Error))
			continue
		}
		c, err := parseTopicConfig(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[r.Name] = c
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("describe topic configs: %w", errors.Join(errs...))
	}
	return out, nil
}

func parseTopicConfig(r kafka.ConfigResourceResult) (TopicConfig, error) {
	c := TopicConfig{Topic: r.Name, AppendTime: r.Config["message.timestamp.type"].Value == "LogAppendTime"}
	if e, ok := r.Config["max.message.bytes"]; ok {
		n, err := strconv.Atoi(e.Value)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("topic %s: max.message.bytes=%q is not a positive number", r.Name, e.Value)
		}
		c.MaxMessageBytes = n
	}
	for key, dst := range map[string]*time.Duration{
		SettingRetention: &c.Retention, SettingTimestampBefore: &c.TimestampBefore, SettingTimestampAfter: &c.TimestampAfter,
	} {
		e, ok := r.Config[key]
		if !ok {
			continue
		}
		ms, err := strconv.ParseInt(e.Value, 10, 64)
		if err != nil {
			return c, fmt.Errorf("topic %s: %s=%q is not a number: %w", r.Name, key, e.Value, err)
		}
		// -1 (retention) is "for ever"; Long.MAX (the bounds' default)
		// overflows a Duration: both are no limit.
		if ms > 0 && ms < int64(1<<63-1)/int64(time.Millisecond) {
			*dst = time.Duration(ms) * time.Millisecond
		}
	}
	return c, nil
}

// connectionProperty: librdkafka properties an admin client takes too
// (connection, security, client identity); the producer's tuning would
// only draw librdkafka warnings.
func connectionProperty(k string) bool {
	for _, p := range []string{"security.", "sasl.", "ssl.", "ssl_", "enable.ssl", "socket.", "broker.", "api.version", "client.", "reconnect.", "retry.backoff", "connections.max.idle.ms"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// Dead-letter reasons of records the sink does not produce because of
// their event time (the message timestamp).
const (
	// reasonRetention: the topic's retention would let the broker delete
	// the record within the retention margin.
	reasonRetention = "retention"
	// reasonTimestamp: the topic refuses the record's timestamp
	// (message.timestamp.before.max.ms or after.max.ms).
	reasonTimestamp = "timestamp_refused"
)

func (l *TimeLimit) reason() string {
	if l.Setting == SettingRetention {
		return reasonRetention
	}
	return reasonTimestamp
}

// detail is the dead letter's detail for a record of time t: the topic,
// the limit, the record's time, the bound it missed and the fixes.
func (l *TimeLimit) detail(topic string, t time.Time, brokers string) string {
	const layout = "2006-01-02T15:04:05.000Z07:00"
	at := t.UTC().Format(layout)
	alter := fmt.Sprintf("kafka-configs.sh --bootstrap-server %s --alter --entity-type topics --entity-name %s --add-config", brokers, topic)
	switch l.Setting {
	case SettingRetention:
		return fmt.Sprintf("topic %s keeps messages for retention.ms=%d (%s) counted from their timestamp, the row's event time: "+
			"the record's event time %s is older than %s (now less the retention plus a margin of %s), so the broker would delete it at one of its next retention checks. "+
			"Fixes: raise the topic's retention above the records' age plus %s (%s retention.ms=<ms>, or -1 to keep for ever), then replay this dead letter; "+
			"or fix the clock or the data that gave the record this time",
			topic, l.Limit.Milliseconds(), l.Limit, at, l.Oldest.UTC().Format(layout), l.Margin, l.Margin, alter)
	case SettingTimestampBefore:
		return fmt.Sprintf("topic %s refuses messages whose timestamp, the row's event time, is more than %s=%d (%s) in the past: "+
			"the record's event time %s is older than %s (now less the bound plus a margin of %s). "+
			"Fixes: raise the topic's bound (%s %s=9223372036854775807), then replay this dead letter; or fix the clock or the data that gave the record this time",
			topic, l.Setting, l.Limit.Milliseconds(), l.Limit, at, l.Oldest.UTC().Format(layout), l.Margin, alter, l.Setting)
	default:
		return fmt.Sprintf("topic %s refuses messages whose timestamp, the row's event time, is more than %s=%d (%s) in the future: "+
			"the record's event time %s is after %s (now plus the bound less %s). "+
			"Fixes: fix the clock or the data that gave the record this time (the writer's clock, or this host's); or raise the topic's bound (%s %s=9223372036854775807), then replay this dead letter",
			topic, l.Setting, l.Limit.Milliseconds(), l.Limit, at, l.Newest.UTC().Format(layout), l.Margin, alter, l.Setting)
	}
}
