package plugin

import (
	"fmt"
	"io"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

// Config says how a toolstack starts the plugin.
type Config struct {
	// Cmd runs `xenmig plugin`, with the global flags it needs, e.g.
	// exec.Command("/usr/sbin/xenmig", "--config", "/etc/xenmig/xenmig.toml", "plugin").
	Cmd *exec.Cmd
	// Stderr receives the plugin's standard error: xenmig's log lines, at
	// the configured log level, and go-plugin's as JSON (nil: discarded).
	Stderr io.Writer
	// Logger receives go-plugin's own log about the plugin process (nil:
	// none).
	Logger hclog.Logger
}

// Client is a running plugin process and the Migrator it serves. Its
// methods may be called from several goroutines at once.
type Client struct {
	Migrator
	process *goplugin.Client
}

// Open starts the plugin process, shakes hands with it (gRPC over a Unix
// socket, mutual TLS between the two processes) and returns its Migrator.
func Open(cfg Config) (*Client, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	process := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          PluginMap(nil),
		Cmd:              cfg.Cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		Stderr:           cfg.Stderr,
		Logger:           logger,
	})
	conn, err := process.Client()
	if err != nil {
		process.Kill()
		return nil, fmt.Errorf("start the xenmig plugin %s: %w", cfg.Cmd.Path, err)
	}
	raw, err := conn.Dispense(Name)
	if err != nil {
		process.Kill()
		return nil, fmt.Errorf("xenmig plugin %s: %w", cfg.Cmd.Path, err)
	}
	return &Client{Migrator: raw.(Migrator), process: process}, nil
}

// Close ends the plugin process. Calls still running are cancelled: a
// migration that has not reached its switchover leaves the domain running
// on the source.
func (c *Client) Close() {
	c.process.Kill()
}
