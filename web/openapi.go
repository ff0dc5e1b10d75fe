package web

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openAPI is the OpenAPI 3 document of every route serve registers
// (TestOpenAPIListsEveryRoute, in cmd/retraced, holds it to them).
//
//go:embed openapi.json
var openAPI []byte

// RegisterOpenAPI adds GET /api/openapi.json.
func RegisterOpenAPI(r gin.IRouter) {
	r.GET("/api/openapi.json", func(c *gin.Context) {
		c.Data(http.StatusOK, "application/json", openAPI)
	})
}
