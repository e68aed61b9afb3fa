// Package pluginpb is the generated gRPC code of the xenmig toolstack plugin
// (xenmig.proto). Go toolstacks use package plugin, which wraps it; other
// languages generate their own code from xenmig.proto.
//
// The generated files are committed, so building needs no protoc. To
// regenerate them after changing xenmig.proto (protoc from Debian's
// protobuf-compiler, protoc-gen-go v1.36.6 and protoc-gen-go-grpc v1.3.0,
// the versions that match this module's protobuf and grpc):
//
//	go generate ./plugin/pluginpb
package pluginpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative xenmig.proto
