package tmpdeps

import (
	_ "github.com/bytedance/sonic"
	_ "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "go.uber.org/goleak"
	_ "go.yaml.in/yaml/v3"
	_ "gopkg.in/natefinch/lumberjack.v2"
)
