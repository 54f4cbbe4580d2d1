package sqlstore

func (t *tx) SecurityEpoch() (int64, error) {
	var e int64
	err := t.queryRow(`SELECT epoch FROM security_epoch WHERE id = 1`).Scan(&e)
	return e, dbErr(err)
}

// bump advances the security epoch; every method that changes who may do what calls it.
func (t *tx) bump() error {
	_, err := t.exec(`UPDATE security_epoch SET epoch = epoch + 1 WHERE id = 1`)
	return err
}
