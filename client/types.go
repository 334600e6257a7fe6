package client

import "github.com/quorumca/quorumca/api/apitypes"

// The bodies of the API, defined once with the server's (apitypes).
type (
	Signed                   = apitypes.Signed
	Cert                     = apitypes.Cert
	Provisioner              = apitypes.Provisioner
	X5COptions               = apitypes.X5COptions
	Device                   = apitypes.Device
	Policy                   = apitypes.Policy
	TokenRequest             = apitypes.TokenRequest
	Admin                    = apitypes.Admin
	Authority                = apitypes.Authority
	Issuer                   = apitypes.Issuer
	KeyOptions               = apitypes.KeyOptions
	CreateAuthority          = apitypes.CreateAuthority
	ImportAuthority          = apitypes.ImportAuthority
	RotateAuthority          = apitypes.RotateAuthority
	UpdateAuthority          = apitypes.UpdateAuthority
	CRLConfig                = apitypes.CRLConfig
	CSR                      = apitypes.CSR
	OCSPResponder            = apitypes.OCSPResponder
	OCSPResponderCertificate = apitypes.OCSPResponderCertificate
	SetOCSPResponder         = apitypes.SetOCSPResponder
)
