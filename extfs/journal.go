package extfs

// recoverJournal replays the journal into the staged blocks.
func (f *FS) recoverJournal() error {
	return ErrNeedsRecovery
}
