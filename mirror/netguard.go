package mirror

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrPrivateAddress reports a public-only source (Source.PublicOnly) that
// names or connects to a loopback, private, link-local or otherwise
// non-public address.
var ErrPrivateAddress = errors.New("not a public address")

type publicOnlyKey struct{}

// withPublicOnly marks ctx: the downloads made under it go through the
// public-only client.
func withPublicOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, publicOnlyKey{}, true)
}

func isPublicOnly(ctx context.Context) bool {
	v, _ := ctx.Value(publicOnlyKey{}).(bool)
	return v
}

// cgnat is RFC 6598's shared address space, private in all but name.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// publicAddr reports whether a is a global unicast address outside the
// private, loopback, link-local and shared ranges.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() &&
		!a.IsLinkLocalUnicast() && !cgnat.Contains(a)
}

// checkPublicHost resolves host and fails unless every address it has is
// public: a name with one private address among public ones is refused.
func checkPublicHost(ctx context.Context, host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		if !publicAddr(a) {
			return fmt.Errorf("%w: %s", ErrPrivateAddress, host)
		}
		return nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if !publicAddr(a) {
			return fmt.Errorf("%w: %s resolves to %s", ErrPrivateAddress, host, a)
		}
	}
	return nil
}

// publicOnlyClient is an HTTP client that connects to public addresses
// only. The check is made on the address each connection dials, after
// name resolution, so that neither a name that resolves differently at
// sync time than when the source was added, nor a redirect, reaches an
// internal address. It uses no proxy: a proxy's own address would be the
// one checked, and the target's never.
func publicOnlyClient() *http.Client {
	d := &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrPrivateAddress, address)
			}
			if !publicAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrPrivateAddress, ap.Addr())
			}
			return nil
		},
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = d.DialContext
	t.ResponseHeaderTimeout = 30 * time.Second
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: t}
}
