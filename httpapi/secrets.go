package httpapi

import (
	"encoding/base64"
	"errors"
	"strconv"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// The service secrets manager: the CLI hands plaintexts and ciphertexts (base64 in JSON)
// to these calls; they are encrypted under the stack's own data key.

func (s *Server) encrypt(rq *Request) (any, error) {
	var req apitype.EncryptValueRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	ct, err := s.secrets.Encrypt(rq.Context(), rq.Stack.ID, req.Plaintext)
	if err != nil {
		return nil, secretsErr(err)
	}
	return apitype.EncryptValueResponse{Ciphertext: ct}, nil
}

func (s *Server) batchEncrypt(rq *Request) (any, error) {
	var req apitype.BatchEncryptRequest
	if err := rq.decodeBatch(&req, maxSecretsPerBatch, "values"); err != nil {
		return nil, err
	}
	rq.Detail("count", strconv.Itoa(len(req.Plaintexts)))
	cts, err := s.secrets.EncryptBatch(rq.Context(), rq.Stack.ID, req.Plaintexts)
	if err != nil {
		return nil, secretsErr(err)
	}
	if cts == nil {
		cts = [][]byte{}
	}
	return apitype.BatchEncryptResponse{Ciphertexts: cts}, nil
}

func (s *Server) decrypt(rq *Request) (any, error) {
	var req apitype.DecryptValueRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	pt, err := s.secrets.Decrypt(rq.Context(), rq.Stack.ID, req.Ciphertext)
	if err != nil {
		return nil, secretsErr(err)
	}
	return apitype.DecryptValueResponse{Plaintext: pt}, nil
}

func (s *Server) batchDecrypt(rq *Request) (any, error) {
	var req apitype.BatchDecryptRequest
	if err := rq.decodeBatch(&req, maxSecretsPerBatch, "values"); err != nil {
		return nil, err
	}
	rq.Detail("count", strconv.Itoa(len(req.Ciphertexts)))
	resp := apitype.BatchDecryptResponse{Plaintexts: make(map[string][]byte, len(req.Ciphertexts))}
	if len(req.Ciphertexts) == 0 {
		return resp, nil
	}
	pts, err := s.secrets.DecryptBatch(rq.Context(), rq.Stack.ID, req.Ciphertexts)
	if err != nil {
		return nil, secretsErr(err)
	}
	for i, ct := range req.Ciphertexts {
		// The CLI looks each plaintext up by the standard base64 of its ciphertext.
		resp.Plaintexts[b64(ct)] = pts[i]
	}
	return resp, nil
}

// logDecryption records the CLI's own note that it showed secrets (`--show-secrets`).
func (s *Server) logDecryption(rq *Request) (any, error) {
	var req apitype.Log3rdPartyDecryptionEvent
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if req.SecretName != "" {
		rq.Detail("secret_name", truncate(req.SecretName, 200))
	}
	if req.CommandName != "" {
		rq.Detail("command", truncate(req.CommandName, 200))
	}
	return noContent{}, nil
}

func secretsErr(err error) error {
	if errors.Is(err, secrets.ErrDecrypt) {
		return gatehouse.Wrap(gatehouse.EINVALID, err, "the value cannot be decrypted with this stack's key")
	}
	if gatehouse.ErrorCode(err) != gatehouse.EINTERNAL {
		return err
	}
	return gatehouse.Wrap(gatehouse.EUNAVAILABLE, err, "the stack's key cannot be loaded")
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
