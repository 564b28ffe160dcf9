package remote

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Transport returns the HTTP transport for h. ggcr picks plain http by itself for RFC 1918
// and loopback hosts; the returned RoundTripper forces h.Scheme on requests to h.Host so that
// the policy here, not ggcr's guess, decides when credentials travel unencrypted.
// onRead, if set, is called with the size of every chunk read from a response body (progress).
func (h Host) Transport(onRead func(n int)) (http.RoundTripper, func(), error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: h.SkipVerify} //nolint:gosec // skip_verify is the admin's explicit choice
	if len(h.CAs) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, ca := range h.CAs {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, nil, fmt.Errorf("read ca for %s: %w", h, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("ca %s for %s: no certificates found", ca, h)
			}
		}
		tlsConf.RootCAs = pool
	}
	for _, kp := range h.ClientCerts {
		cert, err := tls.LoadX509KeyPair(kp[0], kp[1])
		if err != nil {
			return nil, nil, fmt.Errorf("client certificate for %s: %w", h, err)
		}
		tlsConf.Certificates = append(tlsConf.Certificates, cert)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tlsConf
	base.ResponseHeaderTimeout = 2 * time.Minute
	base.MaxIdleConnsPerHost = 16
	rt := &hostTransport{base: base, host: h.Host, scheme: h.Scheme, header: h.Header, onRead: onRead}
	return rt, base.CloseIdleConnections, nil
}

type hostTransport struct {
	base   http.RoundTripper
	host   string
	scheme string
	header http.Header
	onRead func(int)
}

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == t.host && (req.URL.Scheme != t.scheme || len(t.header) > 0) {
		req = req.Clone(req.Context())
		req.URL.Scheme = t.scheme
		for k, vs := range t.header {
			if req.Header.Get(k) == "" {
				req.Header[k] = vs
			}
		}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || t.onRead == nil {
		return resp, err
	}
	t.onRead(0)
	resp.Body = &countingBody{ReadCloser: resp.Body, onRead: t.onRead}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	onRead func(int)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.onRead(n)
	}
	return n, err
}
