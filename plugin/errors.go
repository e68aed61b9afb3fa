package plugin

import (
	"context"
	"errors"
	"slices"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/plugin/pluginpb"
	"github.com/xenmig/xenmig/xenmig"
)

// sentinel is an error that keeps its identity across the plugin boundary:
// it travels by name, and gives a failure wrapping it its gRPC code.
type sentinel struct {
	name string
	err  error
	code codes.Code
}

// sentinels, the most telling first: a failure's gRPC code is that of the
// first one it wraps. Names are only ever added (docs/PLUGIN.md lists them).
var sentinels = []sentinel{
	{"xenmig.ErrCommitted", xenmig.ErrCommitted, codes.Internal},
	{"hypervisor.ErrPagingUnsupported", hypervisor.ErrPagingUnsupported, codes.FailedPrecondition},
	{"hypervisor.ErrGuestUnsupported", hypervisor.ErrGuestUnsupported, codes.FailedPrecondition},
	{"xenmig.ErrBadPlan", xenmig.ErrBadPlan, codes.InvalidArgument},
	{"xenmig.ErrVersion", xenmig.ErrVersion, codes.FailedPrecondition},
	{"xenmig.ErrRefused", xenmig.ErrRefused, codes.FailedPrecondition},
	{"xenmig.ErrNotXenmig", xenmig.ErrNotXenmig, codes.FailedPrecondition},
	{"xenmig.ErrAborted", xenmig.ErrAborted, codes.Aborted},
	{"hypervisor.ErrNotFound", hypervisor.ErrNotFound, codes.NotFound},
	{"hypervisor.ErrBusy", hypervisor.ErrBusy, codes.FailedPrecondition},
	{"hypervisor.ErrInvalid", hypervisor.ErrInvalid, codes.InvalidArgument},
	{"hypervisor.ErrPaged", hypervisor.ErrPaged, codes.Internal},
	{"hypervisor.ErrNotPopulated", hypervisor.ErrNotPopulated, codes.Internal},
	{"hypervisor.ErrClosed", hypervisor.ErrClosed, codes.Unavailable},
	{"syscall.ECONNREFUSED", syscall.ECONNREFUSED, codes.Unavailable},
	{"context.Canceled", context.Canceled, codes.Canceled},
	{"context.DeadlineExceeded", context.DeadlineExceeded, codes.DeadlineExceeded},
}

// errorDetail describes err for the client: its text and the sentinels it
// wraps.
func errorDetail(err error) *pluginpb.ErrorDetail {
	d := &pluginpb.ErrorDetail{Message: err.Error()}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			d.Sentinels = append(d.Sentinels, s.name)
		}
	}
	return d
}

// toStatus turns a Migrator's error into the gRPC status the call ends with,
// with an ErrorDetail in its details.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	d := errorDetail(err)
	st, derr := status.New(codeOf(d.Sentinels, status.Code(err)), d.Message).WithDetails(d)
	if derr != nil {
		return status.Error(codes.Unknown, d.Message)
	}
	return st.Err()
}

// named returns the sentinels of the given names in the table's order;
// names it does not know (from a newer plugin) are skipped.
func named(names []string) []sentinel {
	var out []sentinel
	for _, s := range sentinels {
		if slices.Contains(names, s.name) {
			out = append(out, s)
		}
	}
	return out
}

// codeOf is the gRPC code of the first sentinel named, or def.
func codeOf(names []string, def codes.Code) codes.Code {
	if s := named(names); len(s) > 0 {
		return s[0].code
	}
	return def
}

// fromStatus turns the status a call ended with back into an error that
// wraps the sentinels the plugin's error wrapped. A status without an
// ErrorDetail (the plugin died, the connection broke) is returned as it is.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		if d, ok := d.(*pluginpb.ErrorDetail); ok {
			return &remoteError{detail: d, code: st.Code()}
		}
	}
	return err
}

// fromDetail is the error of a failed event.
func fromDetail(d *pluginpb.ErrorDetail) error {
	return &remoteError{detail: d, code: codeOf(d.Sentinels, codes.Unknown)}
}

// remoteError is an error that happened inside the plugin process.
type remoteError struct {
	detail *pluginpb.ErrorDetail
	code   codes.Code
}

// Error is the plugin's error text.
func (e *remoteError) Error() string { return e.detail.Message }

// Unwrap returns the sentinels the plugin's error wrapped, for errors.Is.
func (e *remoteError) Unwrap() []error {
	var errs []error
	for _, s := range named(e.detail.Sentinels) {
		errs = append(errs, s.err)
	}
	return errs
}

// GRPCStatus lets status.Code and status.FromError see the call's code.
func (e *remoteError) GRPCStatus() *status.Status { return status.New(e.code, e.detail.Message) }
