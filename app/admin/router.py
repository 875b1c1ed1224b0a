"""The admin API over the config store: one guard for every admin endpoint."""

from fastapi import APIRouter, Depends

from app.admin.auth import require_admin
from app.admin.cache import router as cache_router
from app.admin.config import router as config_router
from app.admin.consumers import router as consumers_router
from app.admin.plans import router as plans_router
from app.admin.rate_limits import router as rate_limits_router
from app.admin.routes import router as routes_router
from app.admin.services import router as services_router
from app.admin.traffic import router as traffic_router
from app.errors import problem_responses

router = APIRouter(
    dependencies=[Depends(require_admin)],
    responses=problem_responses(401, 404, 422),
)
router.include_router(services_router)
router.include_router(plans_router)
router.include_router(consumers_router)
router.include_router(traffic_router)
router.include_router(cache_router)
router.include_router(rate_limits_router)
router.include_router(routes_router)
router.include_router(config_router)
