//! gotarget: generates the `go build -overlay` that sends the Go runtime's
//! system calls to the shunt gate. Not built yet: see the issue "Go functions".
