package config

import (
	"errors"
	"fmt"
	"slices"
)

// CheckRoutes refuses a table whose selector sends accounts to a sink that
// is off (db.url or kafka.brokers empty, after flags and environment): the
// live loader writes a record only to the sinks it has and retires a file
// once they all passed it, so such a table's records would never reach the
// sink its selector names, without a word. The usual cause is a missing
// INGEST_DB_URL in a service's environment; the fix is to set the sink's
// address or the selector to none. Each problem is an [*Error] naming the
// selector's key; nil when there is none.
func (c *Config) CheckRoutes() error {
	var errs []error
	names := make([]string, 0, len(c.Tables))
	for name := range c.Tables {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t := c.Tables[name]
		if !c.DBEnabled() && !t.DB.IsNone() {
			errs = append(errs, &Error{Path: "tables." + name + ".db", Msg: fmt.Sprintf(
				"is %s, but the db sink is off (db.url is empty, and INGEST_DB_URL and DATABASE_URL are unset): "+
					"its records would be retired without reaching PostgreSQL; set db.url, or tables.%s.db: none to load the table to Kafka only",
				t.DB, name)})
		}
		if !c.KafkaEnabled() && !t.Kafka.IsNone() {
			errs = append(errs, &Error{Path: "tables." + name + ".kafka", Msg: fmt.Sprintf(
				"is %s, but the kafka sink is off (kafka.brokers is empty): "+
					"its records would be retired without reaching Kafka; set kafka.brokers, or tables.%s.kafka: none",
				t.Kafka, name)})
		}
	}
	return errors.Join(errs...)
}
