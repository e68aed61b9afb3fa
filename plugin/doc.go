// Package plugin lets a toolstack drive xenmig as a hashicorp/go-plugin
// plugin over gRPC instead of running its command line.
//
// `xenmig plugin` is the server: the toolstack starts it as a child process
// (for Go toolstacks, Open does that and returns a Migrator), and every call
// runs the migration engine on the backend xenmig's configuration names.
// Migrate streams progress back while the domain moves; Receive and Serve
// accept migrations onto the plugin's host; Doctor checks the host. Errors
// keep their identity across the process boundary: errors.Is works on the
// client for the sentinels listed in docs/PLUGIN.md, such as
// xenmig.ErrCommitted and hypervisor.ErrPagingUnsupported.
//
// The wire definition is pluginpb/xenmig.proto, so toolstacks in other
// languages can generate their own client.
package plugin
