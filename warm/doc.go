// Package warm migrates a Xen guest's disks while the guest runs, so that
// it is down only for what changed: pass 1 copies every disk of the
// running guest into local files (crash-consistent, recorded as
// incomplete), sent by the host's helper with each block's hash where
// the host has python, over SFTP otherwise; once the guest is stopped,
// pass 2 has the Xen host hash each disk in fixed blocks (a read-only
// helper sent over the SSH session, see xenhost.Host.HashBlocks),
// compares the hashes with those of the blocks pass 1 wrote, and moves
// only the blocks that differ: where the host has python the comparison
// is made there and the helper sends the changed blocks with its answers
// (xenhost.Host.DiffBlocks).
//
// The block engine is Copy (pass 1) and Sync (pass 2):
//
//	sums, st, err := warm.Copy(ctx, disk, disk.Size(), f, warm.Options{})
//	// ... the guest stops ...
//	sums, st, err = warm.Sync(ctx, host, disk.Path(), disk, disk.Size(), f, sums, warm.Options{})
//
// Session runs both passes for every disk of a guest into a folder and
// records where it got to in a state file, so an interrupted run resumes
// from pass 2 (or redoes pass 1 when its copies are gone).
//
// What keeps the guest's downtime short: pass 2's hash helpers are
// started on the host before the guest stops and wait (Prepare,
// Options.Prepared, given the copy's hashes then), the host hashes with
// Options.Streams helpers at once, differing blocks come while the
// hashing goes on, read once on the host and sent by the helper that
// hashed them, and with
// Session.OutputQCOW2 pass 1 also writes the output image
// (Options.Mirror) that pass 2 patches, so that the migration does not
// copy the disks again once the guest is down (Session.Output).
package warm
