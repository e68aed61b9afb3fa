// Package logging builds xenmig's logrus loggers from the level and format
// names of the configuration ([log] in conf) or the command-line flags.
//
// Log with structured fields, not formatted strings, so that the JSON format
// stays machine-readable:
//
//	log.WithFields(logrus.Fields{"domain": name, "gfn": gfn}).Debug("page fault")
package logging

import (
	"fmt"
	"io"
	"strings"

	"github.com/sirupsen/logrus"
)

// Levels are the accepted level names, most verbose first.
var Levels = []string{"debug", "info", "warn", "error"}

// Formats are the accepted output formats: "text" is logfmt-like key=value
// lines for people, "json" one JSON object a line for log collectors.
var Formats = []string{"text", "json"}

// ParseLevel returns the logrus level for one of Levels.
func ParseLevel(level string) (logrus.Level, error) {
	switch level {
	case "debug":
		return logrus.DebugLevel, nil
	case "info":
		return logrus.InfoLevel, nil
	case "warn":
		return logrus.WarnLevel, nil
	case "error":
		return logrus.ErrorLevel, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want %s)", level, strings.Join(Levels, ", "))
}

// New returns a logger that writes entries at level or more severe to w in
// format ("text" or "json"). Timestamps are RFC 3339 with microseconds, as
// migration phases are short.
func New(level, format string, w io.Writer) (*logrus.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("logging: %w", err)
	}
	const ts = "2006-01-02T15:04:05.000000Z07:00"
	var f logrus.Formatter
	switch format {
	case "text":
		f = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: ts, DisableColors: true}
	case "json":
		f = &logrus.JSONFormatter{TimestampFormat: ts}
	default:
		return nil, fmt.Errorf("logging: unknown log format %q (want %s)", format, strings.Join(Formats, ", "))
	}
	l := logrus.New()
	l.Out = w
	l.Formatter = f
	l.Level = lvl
	return l, nil
}

// Discard returns a logger that drops everything, for tests and for
// library callers that pass no logger.
func Discard() *logrus.Logger {
	l := logrus.New()
	l.Out = io.Discard
	l.Level = logrus.PanicLevel
	return l
}
