// Package spec turns a CRI container request, the sandbox it joins and its image config into an
// OCI runtime spec for runc's libcontainer. Apart from the injected user and device lookups it does no I/O.
package spec
