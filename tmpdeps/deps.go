package tmpdeps

import (
	_ "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "gopkg.in/natefinch/lumberjack.v2"
	_ "go.uber.org/goleak"
	_ "go.yaml.in/yaml/v3"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/bytedance/sonic"
)
