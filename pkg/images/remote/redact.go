package remote

import "strings"

// redacted replaces credentials in URLs; go-containerregistry marks its own redactions the same way.
const redacted = "REDACTED"

// Redact returns err with the credentials removed from every URL in its text (see
// RedactURLs). Registry errors quote URLs: a mirror written as https://user:pass@host, a
// redirect to a pre-signed blob URL (X-Amz-Signature=...), a token endpoint's query. Such an
// error must reach neither the kubelet, which shows it in pod events, nor the log. The error
// still unwraps to err, so its errdefs class and causes still match.
func Redact(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := RedactURLs(msg)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// RedactURLs rewrites every scheme://... URL in s: its userinfo becomes "REDACTED@", the
// value of each query parameter "REDACTED" (which parameters carry secrets depends on the
// server, so none is trusted) and a fragment "#REDACTED". The rest of s is left as it is.
func RedactURLs(s string) string {
	var out strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			out.WriteString(s)
			return out.String()
		}
		start := i + len("://")
		u := s[start : start+urlLen(s[start:])]
		// Punctuation that ends a sentence or a clause ("GET <url>: 401") is not part of it.
		u = strings.TrimRight(u, ".,;:!")
		out.WriteString(s[:start])
		out.WriteString(redactAfterScheme(u))
		s = s[start+len(u):]
	}
}

// urlLen is how far a URL quoted in error text runs: up to a space, a quote or a bracket.
func urlLen(s string) int {
	if n := strings.IndexAny(s, " \t\r\n\"'`<>()[]{}|\\^"); n >= 0 {
		return n
	}
	return len(s)
}

// redactAfterScheme redacts u, a URL without its "scheme://".
func redactAfterScheme(u string) string {
	authEnd := len(u)
	if n := strings.IndexAny(u, "/?#"); n >= 0 {
		authEnd = n
	}
	auth, rest := u[:authEnd], u[authEnd:]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		auth = redacted + auth[at:]
	}
	path, frag, hasFrag := strings.Cut(rest, "#")
	path, query, hasQuery := strings.Cut(path, "?")
	var b strings.Builder
	b.WriteString(auth)
	b.WriteString(path)
	if hasQuery {
		b.WriteByte('?')
		b.WriteString(redactQuery(query))
	}
	if hasFrag && frag != "" {
		b.WriteString("#" + redacted)
	} else if hasFrag {
		b.WriteByte('#')
	}
	return b.String()
}

// redactQuery keeps each parameter's name and drops its value.
func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	params := strings.Split(q, "&")
	for i, p := range params {
		if p == "" {
			continue
		}
		name, _, hasValue := strings.Cut(p, "=")
		if hasValue {
			params[i] = name + "=" + redacted
		} else {
			params[i] = redacted
		}
	}
	return strings.Join(params, "&")
}
