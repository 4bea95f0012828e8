"""Admin for the question bank (and read-only results)."""

from django.contrib import admin

from game.models import Category, GameResult, Question


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ["text", "category", "difficulty"]
    list_filter = ["category", "difficulty"]
    search_fields = ["text"]


@admin.register(GameResult)
class GameResultAdmin(admin.ModelAdmin):
    list_display = ["room", "user", "score", "rank", "created_at"]
    list_filter = ["created_at"]
    readonly_fields = [f.name for f in GameResult._meta.fields]
