package config

import "sort"

// KafkaTopics lists, sorted and once each, the topics of the tables whose
// kafka selector is not none: what a Kafka sink must find at start-up.
func (c *Config) KafkaTopics() []string {
	seen := map[string]bool{}
	var topics []string
	for _, t := range c.Tables {
		topic := t.Topic
		if topic == "" {
			topic = t.Name
		}
		if t.Kafka.IsNone() || seen[topic] {
			continue
		}
		seen[topic] = true
		topics = append(topics, topic)
	}
	sort.Strings(topics)
	return topics
}
