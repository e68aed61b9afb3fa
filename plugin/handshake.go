package plugin

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/xenmig/xenmig/plugin/pluginpb"
)

// Handshake is what a toolstack and `xenmig plugin` must agree on before they
// talk. The magic cookie only keeps the binary from being started as a
// plugin by mistake; ProtocolVersion changes when the service changes
// incompatibly.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "XENMIG_PLUGIN",
	MagicCookieValue: "7f3c9b2e-xenmig-postcopy",
}

// Name is the plugin's name in PluginMap: what a go-plugin client dispenses.
const Name = "migrator"

// PluginMap is the plugin set both ends give go-plugin: impl is the server's
// Migrator, nil on the client. A toolstack that runs its own go-plugin
// client uses it with Handshake and dispenses Name, which yields a Migrator.
func PluginMap(impl Migrator) goplugin.PluginSet {
	return goplugin.PluginSet{Name: &grpcPlugin{impl: impl}}
}

// Serve serves impl as the plugin until the toolstack ends it or ctx is
// done; the process is expected to exit when it returns. logger is
// go-plugin's own log (nil: JSON lines on standard error).
//
// Unless the toolstack chose a directory for the plugin's Unix socket, Serve
// makes a private one and removes it on return, which go-plugin alone does
// not do when the process ends on a signal.
func Serve(ctx context.Context, impl Migrator, logger hclog.Logger) error {
	if os.Getenv(goplugin.EnvUnixSocketDir) == "" {
		dir, err := os.MkdirTemp("", "xenmig-plugin-")
		if err != nil {
			return fmt.Errorf("make the plugin's socket directory: %w", err)
		}
		defer os.RemoveAll(dir)
		if err := os.Setenv(goplugin.EnvUnixSocketDir, dir); err != nil {
			return fmt.Errorf("set %s: %w", goplugin.EnvUnixSocketDir, err)
		}
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		goplugin.Serve(&goplugin.ServeConfig{
			HandshakeConfig: Handshake,
			Plugins:         PluginMap(impl),
			GRPCServer:      goplugin.DefaultGRPCServer,
			Logger:          logger,
		})
	}()
	select {
	case <-served:
	case <-ctx.Done():
	}
	return nil
}

// grpcPlugin is the go-plugin glue: it registers the gRPC service of impl on
// the server and gives clients a Migrator. It has no net/rpc form.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impl Migrator
}

// GRPCServer registers the Migrator service.
func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterMigratorServer(s, &grpcServer{impl: p.impl})
	return nil
}

// GRPCClient returns the Migrator that calls the plugin over cc.
func (p *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return &grpcClient{rpc: pluginpb.NewMigratorClient(cc)}, nil
}
