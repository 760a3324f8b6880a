package pipeline

// OpenBootFSForTest lets the end-to-end tests boot a source image the
// way the boot check boots an output.
var OpenBootFSForTest = openBootFS
