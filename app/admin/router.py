"""The admin API over the config store."""

from fastapi import APIRouter

router = APIRouter()
