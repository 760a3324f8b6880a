package pipeline

// SetUploadSlots gives the batch n upload slots per libvirt host and
// calls onWait as a guest starts to wait for one.
func SetUploadSlots(o *BatchOptions, n int, onWait func(host string)) {
	o.uploads = newHostSlots(n)
	o.uploads.onWait = onWait
}
