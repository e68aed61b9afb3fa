package xenctrl

// Option configures Open and Doctor.
type Option func(*options)

type options struct {
	libLog      bool     // let the Xen libraries print their own messages
	xl          string   // the xl binary
	configPaths []string // where Config looks for a domain's xl config file
}

func defaultOptions() options {
	return options{
		xl:          "xl",
		configPaths: []string{"/etc/xen/%s.cfg", "/etc/xen/%s", "/etc/xen/auto/%s.cfg"},
	}
}

func applyOptions(opts []Option) options {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithLibraryLog lets libxenctrl, libxenevtchn and libxenforeignmemory print
// their own error messages (for instance "xencall: error: Could not obtain
// handle on privileged command interface") to standard error. By default they
// are silenced: every failure is returned as an *Error instead.
func WithLibraryLog(on bool) Option { return func(o *options) { o.libLog = on } }

// WithXL sets the xl binary used for what only the toolstack can do (creating
// a domain shell, renaming, destroying with its devices). Default: "xl" from
// $PATH.
func WithXL(path string) Option { return func(o *options) { o.xl = path } }

// WithConfigPaths sets the fmt patterns (one %s for the domain name) Config
// tries, in order, to find a domain's xl configuration file. Default:
// /etc/xen/%s.cfg, /etc/xen/%s, /etc/xen/auto/%s.cfg.
func WithConfigPaths(patterns ...string) Option {
	return func(o *options) { o.configPaths = append([]string(nil), patterns...) }
}
