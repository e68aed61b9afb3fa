package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestNewErrors(t *testing.T) {
	for _, tt := range []struct {
		level, format string
		want          string
	}{
		{"verbose", "text", `logging: unknown log level "verbose" (want debug, info, warn, error)`},
		{"", "text", `logging: unknown log level "" (want debug, info, warn, error)`},
		{"info", "xml", `logging: unknown log format "xml" (want text, json)`},
	} {
		_, err := New(tt.level, tt.format, &bytes.Buffer{})
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%q, %q) = %v, want %q", tt.level, tt.format, err, tt.want)
		}
	}
}

func TestLevels(t *testing.T) {
	for _, tt := range []struct {
		level string
		want  []string // messages expected out of debug, info, warn, error
	}{
		{"debug", []string{"d", "i", "w", "e"}},
		{"info", []string{"i", "w", "e"}},
		{"warn", []string{"w", "e"}},
		{"error", []string{"e"}},
	} {
		var buf bytes.Buffer
		l, err := New(tt.level, "json", &buf)
		if err != nil {
			t.Fatalf("New(%q, json) = %v", tt.level, err)
		}
		l.Debug("d")
		l.Info("i")
		l.Warn("w")
		l.Error("e")
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("level %s: line %q is not JSON: %v", tt.level, line, err)
			}
			got = append(got, m["msg"].(string))
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("level %s: logged %q, want %q", tt.level, got, tt.want)
		}
	}
}

func TestJSONFields(t *testing.T) {
	var buf bytes.Buffer
	l, err := New("info", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.WithFields(logrus.Fields{"domain": "guest1", "gfn": 4096, "phase": "postcopy"}).Info("page fault served")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("output %q is not JSON: %v", buf.String(), err)
	}
	for k, want := range map[string]any{
		"level": "info", "msg": "page fault served",
		"domain": "guest1", "gfn": float64(4096), "phase": "postcopy",
	} {
		if m[k] != want {
			t.Errorf("field %q = %v, want %v", k, m[k], want)
		}
	}
	if _, ok := m["time"]; !ok {
		t.Errorf("no time field in %q", buf.String())
	}
}

func TestTextFields(t *testing.T) {
	var buf bytes.Buffer
	l, err := New("debug", "text", &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.WithField("domain", "guest1").WithField("pages", 262144).Debug("pre-copy round")
	got := buf.String()
	for _, want := range []string{`level=debug`, `msg="pre-copy round"`, `domain=guest1`, `pages=262144`, `time=`} {
		if !strings.Contains(got, want) {
			t.Errorf("text output %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "\x1b[") {
		t.Errorf("text output %q has colour escapes", got)
	}
}

func TestDiscard(t *testing.T) {
	l := Discard()
	l.WithField("k", "v").Error("dropped")
	if l.IsLevelEnabled(logrus.ErrorLevel) {
		t.Errorf("Discard().IsLevelEnabled(error) = true, want false")
	}
}
