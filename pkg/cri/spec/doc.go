// Package spec turns a CRI container request, the sandbox it joins and its image config into an
// OCI runtime spec for runc's libcontainer, security contexts included. Apart from the injected
// user, device and seccomp profile lookups (and the host probes the agent calls once) it does no I/O.
package spec
