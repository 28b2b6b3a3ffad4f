package kafkaserver

import (
	"context"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// SetTopicConfig changes configs of an existing topic (an incremental
// alter: configs not named keep their values), as an operator would with
// kafka-configs.sh while clients run, e.g. lowering max.message.bytes.
func (c *Cluster) SetTopicConfig(ctx context.Context, topic string, configs map[string]string) error {
	ac, err := admin(c.Bootstrap())
	if err != nil {
		return err
	}
	defer ac.Close()
	res := kafka.ConfigResource{Type: kafka.ResourceTopic, Name: topic}
	for k, v := range configs {
		res.Config = append(res.Config, kafka.ConfigEntry{Name: k, Value: v, IncrementalOperation: kafka.AlterConfigOpTypeSet})
	}
	out, err := ac.IncrementalAlterConfigs(ctx, []kafka.ConfigResource{res})
	if err != nil {
		return fmt.Errorf("kafkaserver: alter configs of %s: %w", topic, err)
	}
	for _, r := range out {
		if r.Error.Code() != kafka.ErrNoError {
			return fmt.Errorf("kafkaserver: alter configs of %s: %w", topic, r.Error)
		}
	}
	return nil
}

// TopicConfig returns the value a broker applies for one config of a
// topic: its own setting, or the broker's default.
func (c *Cluster) TopicConfig(ctx context.Context, topic, name string) (string, error) {
	ac, err := admin(c.Bootstrap())
	if err != nil {
		return "", err
	}
	defer ac.Close()
	out, err := ac.DescribeConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: topic}})
	if err != nil {
		return "", fmt.Errorf("kafkaserver: describe configs of %s: %w", topic, err)
	}
	if len(out) != 1 || out[0].Error.Code() != kafka.ErrNoError {
		return "", fmt.Errorf("kafkaserver: describe configs of %s: %v", topic, out)
	}
	e, ok := out[0].Config[name]
	if !ok {
		return "", fmt.Errorf("kafkaserver: topic %s has no config %s", topic, name)
	}
	return e.Value, nil
}
