// Package secfile reads the files whose permissions decide the bastion's
// security: private keys (the host key, the host CA key, static targets'
// keys) and files that grant access (the config file, users' keys_file,
// revoked_keys_file). It refuses them when someone else could read a
// private key or rewrite who gets in, as sshd refuses an "UNPROTECTED
// PRIVATE KEY FILE" and, with StrictModes, a group- or world-writable
// authorized_keys file.
//
// A private key owned by the user the bastion runs as must be accessible by
// that user alone (mode 0600 or 0400), as sshd demands. One owned by
// another user (root) may also be readable by its group, because that group
// is how the bastion is given the file: a Kubernetes Secret mounted with
// defaultMode 0400 and the pod's fsGroup is 0440 root:fsGroup, and a
// systemd service's key under /etc/bastion is 0640 root:bastion. Nothing
// else: not writable by the group, no access at all for others.
//
// The checks are made on the open file (fstat), so a symlink is judged by
// what it points to, and a file swapped between the check and the read is
// not read.
package secfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ModeError is a file refused for its permissions.
type ModeError struct {
	Path string
	Mode fs.FileMode
	// Private is set for a private key, unset for a file that grants
	// access.
	Private bool
}

func (e *ModeError) Error() string {
	if e.Private {
		return fmt.Sprintf("UNPROTECTED PRIVATE KEY FILE: %s is mode %04o, accessible by group or others; "+
			"private keys must be readable by the bastion's user only, as sshd requires (chmod 600 %s)", e.Path, e.Mode.Perm(), e.Path)
	}
	return fmt.Sprintf("%s is mode %04o, writable by group or others, and it decides who gets in (chmod go-w %s)", e.Path, e.Mode.Perm(), e.Path)
}

// DanglingSymlinkError is a path that is a symlink to nothing. It does not
// match fs.ErrNotExist: a file that would be created when missing (the host
// keys) must not be created behind a symlink, nor be retried forever.
type DanglingSymlinkError struct {
	Path, Target string
}

func (e *DanglingSymlinkError) Error() string {
	return fmt.Sprintf("%s is a symlink to %s, which does not exist", e.Path, e.Target)
}

// ReadPrivateKey returns the contents of the private key file at path,
// refusing it (*ModeError) if others could read or change it. A missing
// file is an error matching fs.ErrNotExist; a symlink to nothing is a
// *DanglingSymlinkError.
func ReadPrivateKey(path string) ([]byte, error) {
	return read(path, privateKeyOK, true)
}

// ReadAccessFile returns the contents of a file that grants access (the
// config file, an authorized_keys file), refusing it (*ModeError) if its
// group or others may write it.
func ReadAccessFile(path string) ([]byte, error) {
	return read(path, func(fi fs.FileInfo) bool { return fi.Mode().Perm()&0o022 == 0 }, false)
}

// privateKeyOK reports whether fi's permissions are those of a private key
// only its user can use (see the package documentation).
func privateKeyOK(fi fs.FileInfo) bool {
	perm := fi.Mode().Perm()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return perm&0o037 == 0
	}
	return perm&0o077 == 0
}

// read opens path, checks the open file with ok and reads it. O_NONBLOCK
// keeps a FIFO at path from hanging the open; only regular files are read.
func read(path string, ok func(fs.FileInfo) bool, private bool) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, notExist(path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case fi.IsDir():
		return nil, &fs.PathError{Op: "read", Path: path, Err: syscall.EISDIR}
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if !ok(fi) {
		return nil, &ModeError{Path: path, Mode: fi.Mode(), Private: private}
	}
	return io.ReadAll(f)
}

// notExist turns err, from opening path, into a *DanglingSymlinkError if
// path is a symlink to nothing.
func notExist(path string, err error) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(path)
		return &DanglingSymlinkError{Path: path, Target: target}
	}
	return err
}
